"""Compile the pipelines to the YAML the Kubeflow UI uploads ("+ Upload pipeline").

Compilation is deterministic: the same code and settings give byte-identical files, which the golden-file
test in tests/pipelines/test_compile.py relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from kfp import compiler

from pipelines.batch_inference import build_batch_inference_pipeline
from pipelines.retraining import build_retraining_pipeline
from pipelines.settings import PipelineSettings
from pipelines.training import build_training_pipeline
from state_core.errors import ConfigError, Problem

# pipeline name on the command line -> builder
PIPELINES: dict[str, Callable] = {
    "train": build_training_pipeline,
    "batch-infer": build_batch_inference_pipeline,
    "retrain": build_retraining_pipeline,
}


def build_pipeline(name: str, settings: PipelineSettings | None = None):
    """The pipeline object called `name`; `ConfigError` lists the known names otherwise."""
    if name not in PIPELINES:
        raise ConfigError(
            "pipeline",
            Problem(name, "unknown pipeline", f"use one of {', '.join(PIPELINES)}"),
        )
    return PIPELINES[name](settings)


def compile_pipeline(name: str, out_path: str | Path, settings: PipelineSettings | None = None) -> Path:
    """Write the compiled YAML of pipeline `name` to `out_path` (folders are created)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.yaml")  # kfp insists on a .yaml suffix
    compiler.Compiler().compile(build_pipeline(name, settings), str(tmp))
    tmp.replace(out)
    return out


def compile_all(out_dir: str | Path, settings: PipelineSettings | None = None) -> list[Path]:
    """Compile every pipeline to `<out_dir>/<name>.yaml`."""
    return [compile_pipeline(name, Path(out_dir) / f"{name}.yaml", settings) for name in PIPELINES]
