"""cell-eval's "mean baseline": every perturbation predicted as the mean of all group means.

Evaluate the baseline like a model (`evaluate(baseline, real, de_pred=baseline_de.csv, ...)`), then
`score(user_agg, baseline_agg)` normalises a model's metrics against it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from state_core.atomic import write_h5ad_atomic
from state_core.errors import DataError
from state_core.eval.csv_io import write_table_csv
from state_core.eval.de import compute_de
from state_core.eval.inputs import Groups, label_array, load_cells, prepared
from state_core.eval.pseudobulk import group_means

log = logging.getLogger(__name__)


def _cells_per_pert(
    groups: Groups, counts: pd.DataFrame | str | Path | None, pert_col: str, counts_col: str
) -> dict[str, int]:
    if counts is None:
        return {p: int(groups.rows[p].size) for p in groups.perts}
    frame = counts if isinstance(counts, pd.DataFrame) else pd.read_csv(counts)
    for col in (pert_col, counts_col):
        if col not in frame.columns:
            raise DataError(
                f"counts table lacks column {col!r} (has {list(frame.columns)})\n"
                f"    fix: provide columns {pert_col!r} and {counts_col!r}"
            )
    frame = frame[frame[pert_col].astype(str) != groups.control]
    return {str(p): int(n) for p, n in zip(frame[pert_col], frame[counts_col], strict=True)}


def build_baseline(
    adata: ad.AnnData | str | Path,
    *,
    pert_col: str = "gene",
    control_pert: str = "non-targeting",
    counts: pd.DataFrame | str | Path | None = None,
    counts_col: str = "n_cells",
    output_path: str | Path | None = None,
    output_de_path: str | Path | None = None,
    allow_discrete: bool = False,
) -> ad.AnnData:
    """The mean-baseline AnnData (dense float32): n cells per perturbation, all equal to the mean of
    the per-group means (control included), followed by the real control cells."""
    data = prepared(load_cells(adata, "baseline input", [pert_col]), "baseline input", allow_discrete)
    labels = label_array(data, pert_col, "baseline input")
    if control_pert not in set(labels):
        raise DataError(
            f"control {control_pert!r} not in {pert_col!r} of the baseline input\n    fix: pass --control-pert"
        )
    groups = Groups.build(labels, control_pert)
    every_group = sorted(groups.rows)
    # cell-eval averages float32 group means in float32
    mean_profile = group_means(data.x, groups, every_group).astype(np.float32).mean(axis=0)  # [G]
    n_cells = _cells_per_pert(groups, counts, pert_col, counts_col)
    pert_labels = np.concatenate([np.repeat(np.array([p], dtype=object), n) for p, n in n_cells.items()])
    ctrl_rows = groups.rows[control_pert]
    ctrl_x = data.x[ctrl_rows]
    ctrl_dense = ctrl_x.toarray() if sp.issparse(ctrl_x) else np.asarray(ctrl_x)
    x = np.vstack([np.broadcast_to(mean_profile, (pert_labels.size, mean_profile.size)), ctrl_dense]).astype(np.float32)
    obs = pd.DataFrame(
        {pert_col: np.concatenate([pert_labels, np.full(ctrl_rows.size, control_pert, dtype=object)])},
        index=[f"p.{i}" for i in range(pert_labels.size)] + list(data.obs.index[ctrl_rows].astype(str)),
    )
    baseline = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=data.var_names))
    if output_path is not None:
        write_h5ad_atomic(baseline, output_path)
    if output_de_path is not None:
        base_groups = Groups.build(obs[pert_col].to_numpy().astype(str), control_pert)
        table = compute_de(x, base_groups, np.asarray(data.var_names), is_log1p=not allow_discrete)
        write_table_csv(table.to_frame(), Path(output_de_path))
    return baseline
