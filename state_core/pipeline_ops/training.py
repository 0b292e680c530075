"""The pipeline's train stage: one `train_st` call on the embedded data and split of this run."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from state_core.pipeline_ops.checkpoints import durable_key, mirrored

EXPERIMENT_TOML = "experiment.toml"  # written by the embed stage


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
    if not checkpoint_uri:
        train_st(config)
        return out
    with mirrored(work, checkpoint_uri.rstrip("/") + "/" + durable_key(data_fingerprint, model_preset, overrides),
                  interval_s=mirror_interval_s):
        train_st(config)
    if out.exists():
        shutil.rmtree(out)
    shutil.move(str(work), str(out))
    return out
