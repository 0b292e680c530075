"""Shared fixtures: one small exported ST model, a GCS emulator, and a helper to run a local server."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from serve_helpers import BATCHES, INPUT_DIM, PERTURBATIONS

from state_core.export import ExportedModel, GraphInputs, ModelMetadata, export_onnx
from state_core.models.st import StateTransitionModel, STConfig

for name in ("onnxscript", "onnx_ir"):
    logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def st_model() -> StateTransitionModel:
    config = STConfig(input_dim=INPUT_DIM, output_dim=INPUT_DIM, n_perturbations=len(PERTURBATIONS), hidden_dim=16,
                      n_layers=2, n_heads=2, ffn_dim=32, gene_dim=10, n_batches=len(BATCHES),
                      decoder_hidden_dims=(16,), dropout=0.0)
    return StateTransitionModel(config).eval()


@pytest.fixture(scope="session")
def exported(st_model, tmp_path_factory) -> ExportedModel:
    """model.onnx + metadata.json as `export_run` writes them."""
    folder = tmp_path_factory.mktemp("exported")
    inputs = GraphInputs(INPUT_DIM, len(PERTURBATIONS), len(BATCHES))
    onnx_export = export_onnx(st_model, folder / "model.onnx", inputs, parity_shapes=((3, 5),))
    metadata = ModelMetadata(model_kind="state", run_id="test-run", signature=onnx_export.signature,
                             perturbations=PERTURBATIONS, batches=BATCHES,
                             gene_names=tuple(f"g{i}" for i in range(10)), control_pert="non-targeting")
    metadata.save(folder / "metadata.json")
    return ExportedModel(folder, onnx_export, metadata)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty bucket on a fresh in-memory GCS emulator, reached through STORAGE_EMULATOR_HOST."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="models")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield "models"
    finally:
        server.stop()
