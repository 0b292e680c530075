"""An in-process GCS emulator per test, reached through `STORAGE_EMULATOR_HOST`."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

BUCKET = "state-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Name of an empty bucket on a fresh in-memory emulator; stopped at teardown."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield BUCKET
    finally:
        server.stop()
