"""Publish exported models into a Triton model repository (local folder or `gs://`).

One published model is three model folders (see `state_core.serve.ensemble`), all with the same version numbers:

    <repository>/<model>/config.pbtxt                 ensemble: what clients call (pinned to one version)
    <repository>/<model>/<version>/metadata.json      perturbation / gene names, dims, run id
    <repository>/<model>_guard/<version>/model.py     request checks, names -> indices (+ metadata.json)
    <repository>/<model>_onnx/<version>/model.onnx    the graph (+ metadata.json, and model.py: the
                                                      python-backend wrapper, ignored by onnxruntime)

Publishing is atomic: the new version folders are put in place first (one rename each locally), then the
two step configs are rewritten to load the new version next to the one served before, and last the
ensemble `config.pbtxt` is rewritten in one step to use exactly the new version (`version_policy:
specific`): the commit point. A server that polls the repository sees either the old ensemble or the
new one, each with its steps loaded, never a partial version. Older versions beyond the last
`keep_last` are deleted afterwards (never the version served just before, which a polling server may
still be using); the kept ones stay on storage so a rollback is a config rewrite (`rollback_to`).
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

from state_core.errors import ArtifactError, ServingError
from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.export.run_export import ONNX_FILE
from state_core.serve.ensemble import ServedLayout, graph_config, render_layout
from state_core.serve.repo_store import RepositoryStore
from state_core.serve.triton_config import CONFIG_FILE, TritonModelConfig, parse_config

log = logging.getLogger(__name__)

PYTHON_MODEL_FILE = "model.py"
CELL_SET_LEN_KEY = "cell_set_len"  # metadata.extra: the set length the model was trained at (warmup shape)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class PublishedVersion:
    repository: str
    model_name: str
    version: int
    kept_versions: tuple[int, ...]
    removed_versions: tuple[int, ...]
    config: TritonModelConfig


def python_backend_source(module: str = "python_backend_model.py") -> str:
    """The text of a python-backend model file of this package (the ORT wrapper or the guard)."""
    return resources.files("state_core.serve").joinpath(module).read_text()


def served_versions(config_text: str | None) -> tuple[int, ...]:
    """Versions a `config.pbtxt` pins with `version_policy: specific` (empty when none or no file)."""
    if not config_text:
        return ()
    try:
        config = parse_config(config_text, CONFIG_FILE)
    except ValueError:
        return ()
    return tuple(config.version_policy.specific.versions)


def build_config(
    layout: ServedLayout, metadata: ModelMetadata, backend: str, loaded_versions: tuple[int, ...], **overrides
) -> TritonModelConfig:
    """The graph step's config; warmed up at the model's training set length when the export recorded it."""
    if backend not in ("onnxruntime", "python"):
        raise ServingError(f"backend {backend!r} is not supported; use 'onnxruntime' (production) or 'python' (local)")
    set_len = metadata.extra.get(CELL_SET_LEN_KEY, "")
    if set_len.isdigit():
        overrides.setdefault("warmup_set_lengths", (int(set_len),))
    return graph_config(layout, metadata.signature, backend, served_versions=loaded_versions, **overrides)


def _copy_exported(exported_dir: Path, folder: Path, names: tuple[str, ...]) -> None:
    folder.mkdir()
    for name in names:
        source = exported_dir / name
        if not source.is_file():
            raise ArtifactError(f"{source} is missing; export the model first (`state export onnx`)")
        shutil.copyfile(source, folder / name)


def _stage(layout: ServedLayout, exported_dir: Path, work: Path) -> dict[str, Path]:
    """Version folders of the three models, staged in `work` (graph, guard, ensemble: the publish order)."""
    staged = {model: work / model for model in layout.publish_order}
    _copy_exported(exported_dir, staged[layout.graph], (ONNX_FILE, METADATA_FILE))
    (staged[layout.graph] / PYTHON_MODEL_FILE).write_text(python_backend_source())
    if not layout.guarded:
        return staged
    _copy_exported(exported_dir, staged[layout.guard], (METADATA_FILE,))
    (staged[layout.guard] / PYTHON_MODEL_FILE).write_text(python_backend_source("guard_model.py"))
    _copy_exported(exported_dir, staged[layout.name], (METADATA_FILE,))
    return staged


def _write_configs(store: RepositoryStore, layout: ServedLayout, texts: dict[str, str]) -> None:
    for model in layout.publish_order:  # the ensemble last: the commit point
        store.write_text(texts[model], model, CONFIG_FILE)


def publish_model(
    repository: str | Path,
    model_name: str,
    exported_dir: str | Path,
    *,
    backend: str = "onnxruntime",
    keep_last: int = 3,
    names_input: bool = False,
    **config_overrides,
) -> PublishedVersion:
    """Add `exported_dir` (model.onnx + metadata.json) as the next version of `model_name` and serve it.

    `names_input` also accepts perturbation names (`pert_name`, BYTES); only for servers whose python
    backend has numpy 1.x (see `ServedLayout`)."""
    if not _MODEL_NAME.match(model_name):
        raise ServingError(f"model name {model_name!r} is not allowed; use letters, digits, '_', '-', '.'")
    if keep_last < 1:
        raise ServingError(f"keep_last={keep_last}: keep at least the version being published (>= 1)")
    exported_dir = Path(exported_dir)
    metadata = ModelMetadata.load(exported_dir / METADATA_FILE)
    store = RepositoryStore(str(repository))
    layout = ServedLayout.for_signature(model_name, metadata.signature, names_input)
    version = max((v for model in layout.models for v in store.versions(model)), default=0) + 1
    previously_served = served_versions(store.read_text(model_name, CONFIG_FILE))
    loaded = tuple(sorted({version, *previously_served})) if layout.guarded else (version,)
    config = build_config(layout, metadata, backend, loaded, **config_overrides)
    with tempfile.TemporaryDirectory(prefix="state-publish-") as work:
        for model, staged in _stage(layout, exported_dir, Path(work)).items():
            store.put_version(model, version, staged)
    _write_configs(store, layout, render_layout(layout, metadata.signature, config, version, loaded))
    versions = store.versions(model_name)
    # A polling server may still be (re)loading the version it served before this publish: keep it
    # until the next publish, whatever keep_last says, so its files never vanish mid-load.
    removed = tuple(v for v in versions[:-keep_last] if v != version and v not in previously_served)
    for old in removed:
        for model in layout.models:
            store.remove_version(model, old)
    kept = tuple(v for v in versions if v not in removed)
    log.info("published %s version %d to %s (kept %s, removed %s)", model_name, version, repository, kept, removed)
    return PublishedVersion(str(repository), model_name, version, kept, removed, config)


def rollback_to(
    repository: str | Path,
    model_name: str,
    version: int,
    *,
    backend: str = "onnxruntime",
    names_input: bool = False,
    **config_overrides,
) -> TritonModelConfig:
    """Serve an older kept version again by rewriting `config.pbtxt` (one atomic write)."""
    store = RepositoryStore(str(repository))
    if version not in store.versions(model_name):
        raise ServingError(
            f"{store.uri(model_name)}: version {version} is not in the repository (kept: {store.versions(model_name)})"
        )
    text = store.read_text(model_name, version, METADATA_FILE)
    if text is None:
        raise ArtifactError(f"{store.uri(model_name, version, METADATA_FILE)} is missing")
    metadata = ModelMetadata.from_json(json.loads(text), source=store.uri(model_name, version, METADATA_FILE))
    layout = ServedLayout.for_signature(model_name, metadata.signature, names_input)
    missing = [m for m in layout.models[1:] if version not in store.versions(m)]
    if missing:
        raise ServingError(
            f"{store.uri(model_name)}: version {version} has no {', '.join(missing)} folder "
            "(published before the guarded layout); republish it with `state export triton`"
        )
    current = served_versions(store.read_text(model_name, CONFIG_FILE))
    loaded = tuple(sorted({version, *current})) if layout.guarded else (version,)
    config = build_config(layout, metadata, backend, loaded, **config_overrides)
    _write_configs(store, layout, render_layout(layout, metadata.signature, config, version, loaded))
    return config
