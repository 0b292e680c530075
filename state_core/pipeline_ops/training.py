"""The pipeline's train stage: one `train_st` call on the embedded data and split of this run."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from state_core.errors import ConfigError, Problem
from state_core.pipeline_ops.checkpoints import durable_key, mirrored

EXPERIMENT_TOML = "experiment.toml"  # written by the embed stage
SHARED_MEMORY = Path("/dev/shm")
# NCCL between GPUs of one pod goes through /dev/shm; container runtimes give 64 MiB unless a volume is mounted
SHARED_MEMORY_NEEDED = 1 << 30


def shared_memory_problem(gpus: int, shm_bytes: int) -> Problem | None:
    """Why a run on `gpus` GPUs cannot start with `shm_bytes` of /dev/shm, or None."""
    if gpus <= 1 or shm_bytes >= SHARED_MEMORY_NEEDED:
        return None
    return Problem(
        "gpu_count",
        f"{gpus} GPUs but /dev/shm holds only {shm_bytes >> 20} MiB",
        "compile the pipeline with `state pipeline compile --multi-gpu` (a memory-backed /dev/shm), "
        "or run it with gpu_count=1",
    )


def _gpus_used(devices: object, accelerator: str) -> int:
    """How many GPUs Lightning will start processes on for these `training.*` values."""
    import torch

    if accelerator == "cpu" or not torch.cuda.is_available():
        return 0
    if isinstance(devices, list):
        return len(devices)
    if str(devices).lstrip("-").isdigit() and int(devices) > 0:
        return int(devices)
    return torch.cuda.device_count()  # auto / -1: every visible GPU


def _check_shared_memory(devices: object, accelerator: str) -> None:
    shm = shutil.disk_usage(SHARED_MEMORY).total if SHARED_MEMORY.is_dir() else 0
    problem = shared_memory_problem(_gpus_used(devices, accelerator), shm)
    if problem:
        raise ConfigError("training task", problem)


def train_for_pipeline(
    embedded_dir: str,
    split_dir: str,
    run_dir: str,
    model_preset: str,
    overrides: Sequence[str],
    data_fingerprint: str,
    checkpoint_uri: str = "",
    mirror_interval_s: float = 60.0,
) -> Path:
    """Train into `run_dir` (the task's output folder); returns it.

    With `checkpoint_uri` the run trains in a scratch folder next to `run_dir` that is mirrored to
    `<checkpoint_uri>/<key>` (key: data fingerprint, preset and overrides), so a retry of this task resumes.
    """
    from state_core.config.train_config import parse_overrides
    from state_core.data.splits import SplitManifest
    from state_core.train.fit import train_st

    columns = SplitManifest.load(split_dir).columns  # the split stage validated them against the data
    out = Path(run_dir)
    work = out if not checkpoint_uri else out.parent / f".{out.name}-training"
    # Pipeline-owned keys come last so a user override cannot point the run at other data or columns.
    config = parse_overrides(
        [
            *overrides,
            f"model={model_preset}",
            f"data.kwargs.toml_config_path={Path(embedded_dir) / EXPERIMENT_TOML}",
            f"data.kwargs.split_dir={split_dir}",
            f"data.kwargs.pert_col={columns.pert_col}",
            f"data.kwargs.cell_type_key={columns.cell_type_key}",
            f"data.kwargs.batch_col={columns.batch_col if columns.batch_col else 'null'}",
            f"data.kwargs.control_pert={columns.control_pert}",
            f"output_dir={work.parent}",
            f"name={work.name}",
        ]
    )
    _check_shared_memory(config.training.devices, config.training.accelerator)
    if not checkpoint_uri:
        train_st(config)
        return out
    with mirrored(
        work,
        checkpoint_uri.rstrip("/") + "/" + durable_key(data_fingerprint, model_preset, overrides),
        interval_s=mirror_interval_s,
    ):
        train_st(config)
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(work), str(out))
    return out
