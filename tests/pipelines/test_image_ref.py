"""Images are pinned by digest at compile time: parsed references, a real registry's answer, the fallback."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time

import pytest
import requests

from pipelines.image_ref import ImageRef, pin, pinned_image, registry_digest
from state_core.errors import ConfigError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag"),
    [
        ("ghcr.io/state-core/state-train:0.1.0", "ghcr.io", "state-core/state-train", "0.1.0"),
        ("localhost:5000/state-train", "localhost:5000", "state-train", None),
        ("python:3.11-slim", "registry-1.docker.io", "library/python", "3.11-slim"),
        ("team/tool:1", "registry-1.docker.io", "team/tool", "1"),
    ],
)
def test_references_name_registry_repository_and_tag(ref, registry, repository, tag):
    image = ImageRef.parse(ref)
    assert image.registry_and_repository() == (registry, repository) and image.tag == tag
    assert str(image) == ref


def test_pin_keeps_the_tag_for_the_reader_and_adds_the_digest():
    assert pin("ghcr.io/s/t:0.1.0", DIGEST) == f"ghcr.io/s/t:0.1.0@{DIGEST}"
    assert pin(f"ghcr.io/s/t:0.1.0@{DIGEST}", DIGEST) == f"ghcr.io/s/t:0.1.0@{DIGEST}"


def test_a_malformed_digest_is_refused_with_the_expected_form():
    with pytest.raises(ConfigError, match="sha256: and 64 hex digits"):
        pin("ghcr.io/s/t:1", "sha256:abc")


def test_an_unreachable_registry_leaves_the_tag_and_says_how_to_pin(closed_port):
    image, warning = pinned_image(f"localhost:{closed_port}/state:1")
    assert image == f"localhost:{closed_port}/state:1"
    assert "cannot be reached" in warning and "--image-digest" in warning


def test_a_given_digest_wins_without_asking_any_registry(closed_port):
    assert pinned_image(f"localhost:{closed_port}/state:1", DIGEST) == (
        f"localhost:{closed_port}/state:1@{DIGEST}",
        None,
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path, closed_port):
    """A real Docker registry (Debian's docker-registry, the CNCF distribution server) on localhost."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("needs the registry server: apt-get install -y docker-registry")
    config = tmp_path / "registry.yml"
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "r")}},
                "http": {"addr": f"127.0.0.1:{closed_port}"},
                "log": {"level": "error"},
            }
        )
    )
    server = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{closed_port}"
    try:
        for _ in range(100):
            try:
                if requests.get(f"{base}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield base, f"localhost:{closed_port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _push(base: str, repository: str, tag: str, layer: bytes) -> str:
    """Push a one-layer OCI image through the registry API; returns its manifest digest."""

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=5)
        location = start.headers["Location"]
        location = location if location.startswith("http") else base + location
        requests.put(location, params={"digest": digest}, data=data, timeout=5).raise_for_status()
        return {"digest": digest, "size": len(data)}

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config.encode())},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer)}],
        }
    ).encode()
    requests.put(
        f"{base}/v2/{repository}/manifests/{tag}",
        data=manifest,
        timeout=5,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    ).raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_the_registry_digest_of_a_tag_is_what_compile_pins(registry):
    base, host = registry
    first = _push(base, "state-train", "0.1.0", b"layer one")
    assert registry_digest(f"{host}/state-train:0.1.0") == first
    assert pinned_image(f"{host}/state-train:0.1.0") == (f"{host}/state-train:0.1.0@{first}", None)
    moved = _push(base, "state-train", "0.1.0", b"layer two")  # the tag now names other bits
    assert moved != first and registry_digest(f"{host}/state-train:0.1.0") == moved


def test_an_unknown_tag_is_not_pinned(registry):
    _, host = registry
    image, warning = pinned_image(f"{host}/state-train:nope")
    assert image == f"{host}/state-train:nope" and "404" in warning
