"""Split stage: experiment TOML -> split manifest (row indices per file per split) and its summary."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def split_cells(
    experiment_toml: str,
    data_fingerprint: str,
    seed: int,
    pert_col: str,
    cell_type_key: str,
    batch_col: str,
    control_pert: str,
    split: Output[Dataset],
    summary: Output[Markdown],
):
    """Validate the experiment TOML against the data and write the train/val/test split manifest.

    Fails when the data no longer has `data_fingerprint` (changed since the run started)."""
    import shutil
    from pathlib import Path

    from state_core.config.experiment import ObsColumns
    from state_core.data.splits import run_split
    from state_core.pipeline_ops.fingerprint import require_fingerprint

    require_fingerprint(experiment_toml, data_fingerprint)
    columns = ObsColumns(
        pert_col=pert_col,
        cell_type_key=cell_type_key,
        batch_col=batch_col or None,
        control_pert=control_pert,
    )
    run_split(experiment_toml, split.path, columns, seed)
    split.metadata["data_fingerprint"] = data_fingerprint
    shutil.copyfile(Path(split.path) / "split_summary.md", summary.path)
