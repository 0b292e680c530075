"""Serve a production repository (onnxruntime configs) with the local python-backend-only server.

The view is a folder whose `<model>/config.pbtxt` is the local (python backend, CPU) rendering of
the same tensor specs and served versions, and whose version folders are symlinks to the real ones,
so nothing is copied and the ONNX files served are the published ones.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from state_core.errors import ServingError
from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.serve.triton_config import CONFIG_FILE, local_config, parse_config, render_config

log = logging.getLogger(__name__)


def read_config(path: Path) -> Any:  # noqa: ANN401 - Triton's ModelConfig protobuf
    try:
        return parse_config(path.read_text(), str(path))
    except ValueError as err:
        raise ServingError(str(err)) from None


def needs_local_view(repository: Path) -> bool:
    """True when some model in the repository is configured for the native onnxruntime backend."""
    return any(read_config(p).platform == "onnxruntime_onnx" for p in repository.glob(f"*/{CONFIG_FILE}"))


def _local_text(model_dir: Path, config: Any, served: tuple[int, ...]) -> str:
    """The python-backend rendering of an onnxruntime config, keeping batching, versions, parameters, warmup."""
    metadata = ModelMetadata.from_json(json.loads((model_dir / str(served[-1]) / METADATA_FILE).read_text()))
    warmup = tuple(
        sorted({int(w.inputs["ctrl_cell_emb"].dims[0]) for w in config.model_warmup if "ctrl_cell_emb" in w.inputs})
    )
    local = local_config(
        model_dir.name,
        metadata.signature,
        max_batch_size=config.max_batch_size,
        served_versions=tuple(config.version_policy.specific.versions),
        parameters={k: v.string_value for k, v in config.parameters.items()},
        max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds,
        preferred_batch_sizes=tuple(config.dynamic_batching.preferred_batch_size),
        warmup_set_lengths=warmup,
    )
    return render_config(local)


def build_local_view(repository: Path, view_dir: Path) -> Path:
    """Write the python-backend view of `repository` into `view_dir`; returns `view_dir`.

    Models on the onnxruntime platform get the local rendering; the others (ensemble, guard, python)
    keep their config text as published.
    """
    configs = sorted(repository.glob(f"*/{CONFIG_FILE}"))
    if not configs:
        raise ServingError(
            f"{repository}: no <model>/{CONFIG_FILE} found; publish a model first (`state export triton`)"
        )
    for config_path in configs:
        model_dir = config_path.parent
        config = read_config(config_path)
        target = view_dir / model_dir.name
        target.mkdir(parents=True, exist_ok=True)
        versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
        served = tuple(config.version_policy.specific.versions) or tuple(versions[-1:])
        if not served:
            raise ServingError(f"{model_dir}: no numbered version folders")
        text = (
            _local_text(model_dir, config, served) if config.platform == "onnxruntime_onnx" else config_path.read_text()
        )
        (target / CONFIG_FILE).write_text(text)
        for version in versions:
            link = target / str(version)
            if not link.exists():
                link.symlink_to((model_dir / str(version)).resolve(), target_is_directory=True)
    log.info("serving %s through the python-backend view %s", repository, view_dir)
    return view_dir
