"""Publish exported models into a Triton model repository (local folder or `gs://`).

    <repository>/<model>/config.pbtxt
    <repository>/<model>/<version>/model.onnx      the graph
    <repository>/<model>/<version>/metadata.json   perturbation / gene names, dims, run id
    <repository>/<model>/<version>/model.py        python-backend wrapper (ignored by the onnxruntime backend)

Publishing is atomic: the new version folder is put in place first (one rename locally), then
`config.pbtxt` is rewritten in one step to serve exactly that version (`version_policy: specific`).
A server that polls the repository sees either the old config or the new one, never a partial
version. Older versions beyond the last `keep_last` are deleted afterwards (never the version
served just before, which a polling server may still be loading); the kept ones stay on storage so
a rollback is one config rewrite (`rollback_to`).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from state_core.errors import ArtifactError, ServingError
from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.export.run_export import ONNX_FILE
from state_core.serve.repo_store import RepositoryStore
from state_core.serve.triton_config import (
    TritonModelConfig,
    local_config,
    production_config,
    render_config,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
PYTHON_MODEL_FILE = "model.py"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class PublishedVersion:
    repository: str
    model_name: str
    version: int
    kept_versions: tuple[int, ...]
    removed_versions: tuple[int, ...]
    config: TritonModelConfig


def python_backend_source() -> str:
    """The text of the python-backend wrapper written as `<version>/model.py`."""
    return resources.files("state_core.serve").joinpath("python_backend_model.py").read_text()


def served_versions(config_text: str | None) -> tuple[int, ...]:
    """Versions a `config.pbtxt` pins with `version_policy: specific` (empty when none or no file)."""
    if not config_text:
        return ()
    try:
        config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    except text_format.ParseError:
        return ()
    return tuple(config.version_policy.specific.versions)


def build_config(model_name: str, metadata: ModelMetadata, backend: str, version: int, **overrides) -> TritonModelConfig:
    make = production_config if backend == "onnxruntime" else local_config
    if backend not in ("onnxruntime", "python"):
        raise ServingError(f"backend {backend!r} is not supported; use 'onnxruntime' (production) or 'python' (local)")
    return make(model_name, metadata.signature, served_versions=(version,), **overrides)


def _stage(exported_dir: Path, work: Path) -> Path:
    staged = work / "version"
    staged.mkdir()
    for name in (ONNX_FILE, METADATA_FILE):
        source = exported_dir / name
        if not source.is_file():
            raise ArtifactError(f"{source} is missing; export the model first (`state export onnx`)")
        shutil.copyfile(source, staged / name)
    (staged / PYTHON_MODEL_FILE).write_text(python_backend_source())
    return staged


def publish_model(repository: str | Path, model_name: str, exported_dir: str | Path, *, backend: str = "onnxruntime",
                  keep_last: int = 3, **config_overrides) -> PublishedVersion:
    """Add `exported_dir` (model.onnx + metadata.json) as the next version of `model_name` and serve it."""
    if not _MODEL_NAME.match(model_name):
        raise ServingError(f"model name {model_name!r} is not allowed; use letters, digits, '_', '-', '.'")
    if keep_last < 1:
        raise ServingError(f"keep_last={keep_last}: keep at least the version being published (>= 1)")
    exported_dir = Path(exported_dir)
    metadata = ModelMetadata.load(exported_dir / METADATA_FILE)
    store = RepositoryStore(str(repository))
    version = max(store.versions(model_name), default=0) + 1
    config = build_config(model_name, metadata, backend, version, **config_overrides)
    with tempfile.TemporaryDirectory(prefix="state-publish-") as work:
        store.put_version(model_name, version, _stage(exported_dir, Path(work)))
    previously_served = served_versions(store.read_text(model_name, CONFIG_FILE))
    store.write_text(render_config(config), model_name, CONFIG_FILE)  # the commit point
    versions = store.versions(model_name)
    # A polling server may still be (re)loading the version it served before this publish: keep it
    # until the next publish, whatever keep_last says, so its files never vanish mid-load.
    removed = tuple(v for v in versions[:-keep_last] if v != version and v not in previously_served)
    for old in removed:
        store.remove_version(model_name, old)
    kept = tuple(v for v in versions if v not in removed)
    log.info("published %s version %d to %s (kept %s, removed %s)", model_name, version, repository, kept, removed)
    return PublishedVersion(str(repository), model_name, version, kept, removed, config)


def rollback_to(repository: str | Path, model_name: str, version: int, *, backend: str = "onnxruntime",
                **config_overrides) -> TritonModelConfig:
    """Serve an older kept version again by rewriting `config.pbtxt` (one atomic write)."""
    store = RepositoryStore(str(repository))
    if version not in store.versions(model_name):
        raise ServingError(f"{store.uri(model_name)}: version {version} is not in the repository "
                           f"(kept: {store.versions(model_name)})")
    text = store.read_text(model_name, version, METADATA_FILE)
    if text is None:
        raise ArtifactError(f"{store.uri(model_name, version, METADATA_FILE)} is missing")
    metadata = ModelMetadata.from_json(json.loads(text), source=store.uri(model_name, version, METADATA_FILE))
    config = build_config(model_name, metadata, backend, version, **config_overrides)
    store.write_text(render_config(config), model_name, CONFIG_FILE)
    return config
