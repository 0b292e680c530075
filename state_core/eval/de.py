"""Differential expression of every perturbation against the control, as pdex (mode "ref") does it.

* Fold change on pseudobulks: m = expm1(mean log1p) per group ("geometric mean" in count space),
  log2FC = log2((m_pert + eps) / (m_ctrl + eps)); 0/0 -> 0, one-sided zeros -> +-inf (eps = 0 is
  cell-eval's default). Means are rounded to X's float dtype, like pdex, so values match to the ulp.
* Test: two-sided Mann-Whitney U per gene on single-cell values (see `mwu`).
* FDR: Benjamini-Hochberg within each perturbation across its genes.

The result is held as dense [P, G] arrays; `to_frame` gives pdex's long table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from state_core.errors import DataError
from state_core.eval.inputs import Groups, dense_rows
from state_core.eval.mwu import ReferenceTests

DE_COLUMNS = [
    "target",
    "feature",
    "target_mean",
    "ref_mean",
    "target_membership",
    "ref_membership",
    "log2_fold_change",
    "percent_change",
    "p_value",
    "statistic",
    "fdr",
]
REQUIRED_DE_COLUMNS = ["target", "feature", "log2_fold_change", "p_value", "fdr"]


@dataclass(frozen=True)
class DETable:
    """DE of P perturbations over G genes. NaN marks (pert, gene) rows absent from the table."""

    perts: list[str]
    genes: np.ndarray  # [G] str
    log2_fold_change: np.ndarray  # [P, G]
    p_value: np.ndarray  # [P, G]
    fdr: np.ndarray  # [P, G]
    target_mean: np.ndarray | None = None  # [P, G]
    ref_mean: np.ndarray | None = None  # [P, G]
    percent_change: np.ndarray | None = None  # [P, G]
    statistic: np.ndarray | None = None  # [P, G]
    target_membership: np.ndarray | None = None  # [P]
    ref_membership: int = 0

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.fdr)  # [P, G]

    def fdr32(self) -> np.ndarray:
        """FDR as float32: cell-eval casts DE tables to Float32 before every threshold and score."""
        return self.fdr.astype(np.float32)

    def significant(self, fdr_threshold: float = 0.05) -> np.ndarray:
        return self.fdr32() < np.float32(fdr_threshold)  # [P, G]; NaN (absent) is never significant

    def long_columns(self) -> dict[str, np.ndarray | Labels]:
        """pdex's long table, one row per present (pert, gene), as columns; target/feature as codes."""
        n_p, n_g = self.fdr.shape
        keep = self.present.ravel()
        every = bool(keep.all())  # the usual case: no row filter, no copies

        def rows(values: np.ndarray) -> np.ndarray:
            flat = values.ravel()
            return flat if every else flat[keep]

        columns: dict[str, np.ndarray | Labels] = {
            "target": Labels(rows(np.repeat(np.arange(n_p, dtype=np.int32)[:, None], n_g, axis=1)), list(self.perts)),
            "feature": Labels(rows(np.tile(np.arange(n_g, dtype=np.int32), n_p)), [str(g) for g in self.genes]),
        }
        optional = {
            "target_mean": self.target_mean,
            "ref_mean": self.ref_mean,
            "target_membership": None
            if self.target_membership is None
            else np.repeat(self.target_membership[:, None], n_g, axis=1),
            "ref_membership": None if self.target_membership is None else np.full((n_p, n_g), self.ref_membership),
            "log2_fold_change": self.log2_fold_change,
            "percent_change": self.percent_change,
            "p_value": self.p_value,
            "statistic": self.statistic,
            "fdr": self.fdr,
        }
        for name, values in optional.items():
            if values is not None:
                columns[name] = rows(values)
        return columns

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({k: v.values() if isinstance(v, Labels) else v for k, v in self.long_columns().items()})


@dataclass(frozen=True)
class Labels:
    """A string column stored as integer codes into `names` (written as strings)."""

    codes: np.ndarray  # [rows] int32
    names: list[str]

    def values(self) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.codes]


def _fold_changes(pert_mean: np.ndarray, ctrl_mean: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """(log2 fold change, percent change) of count-space means; 0/0 is defined as no change."""
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = pert_mean.dtype.type(epsilon)
        lfc = np.log2((pert_mean + eps) / (ctrl_mean + eps))
        pc = (pert_mean - ctrl_mean) / (ctrl_mean + eps)
    lfc[np.isnan(lfc)] = 0.0
    pc[np.isnan(pc)] = 0.0
    return lfc, pc


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH adjusted p-values (scipy's false_discovery_control, same operations; scipy.stats is slow to import)."""
    m = p_values.size
    order = np.argsort(p_values)
    adjusted = p_values[order] * (m / np.arange(1, m + 1))
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return np.clip(out, 0.0, 1.0)


def _count_space_mean(block: np.ndarray, is_log1p: bool, dtype: np.dtype) -> np.ndarray:
    """expm1(mean over cells of log1p values), rounded to `dtype` before expm1 as pdex does."""
    mean = block.mean(axis=0, dtype=np.float64) if is_log1p else np.log1p(block.astype(np.float64)).mean(axis=0)
    return np.maximum(np.expm1(mean.astype(dtype)), 0)  # floor: unclipped predictions can average below 0


def _arithmetic_count_mean(block: np.ndarray, is_log1p: bool) -> np.ndarray:
    values = block.astype(np.float64)
    return np.maximum((np.expm1(values) if is_log1p else values).mean(axis=0), 0)


def _cpm(mean_counts: np.ndarray) -> np.ndarray:
    total = float(mean_counts.sum())
    return mean_counts / (total if total != 0.0 else 1.0) * 1e6


def compute_de(
    x: np.ndarray | sp.csr_matrix,
    groups: Groups,
    genes: np.ndarray,
    *,
    is_log1p: bool = True,
    epsilon: float = 0.0,
    cpm_filter: float | None = None,
) -> DETable:
    """DE of each perturbation in `groups` against `groups.control` on the cells of `x`."""
    dtype = np.dtype(np.float32) if x.dtype == np.float32 else np.dtype(np.float64)
    ctrl_block = dense_rows(x, groups.rows[groups.control])  # [n_ctrl, G]
    ctrl_mean = _count_space_mean(ctrl_block, is_log1p, dtype)
    ctrl_tests = ReferenceTests(ctrl_block)
    ctrl_cpm = _cpm(_arithmetic_count_mean(ctrl_block, is_log1p)) if cpm_filter is not None else None
    n_p, n_g = len(groups.perts), len(genes)
    # fold changes and means keep X's float precision (pdex's), test results are float64
    out = {name: np.full((n_p, n_g), np.nan, dtype=dtype) for name in ("lfc", "pc", "tm", "rm")}
    out.update({name: np.full((n_p, n_g), np.nan) for name in ("p", "u", "fdr")})
    members = np.zeros(n_p, dtype=np.int64)
    for i, pert in enumerate(groups.perts):
        block = dense_rows(x, groups.rows[pert])  # [n_pert, G]
        members[i] = block.shape[0]
        pert_mean = _count_space_mean(block, is_log1p, dtype)
        lfc, pc = _fold_changes(pert_mean, ctrl_mean, epsilon)
        u1, p = ctrl_tests.test(block)
        columns = (("lfc", lfc), ("pc", pc), ("p", p), ("u", u1), ("tm", pert_mean), ("rm", ctrl_mean))
        if ctrl_cpm is None:
            for name, values in columns:
                out[name][i] = values
            out["fdr"][i] = benjamini_hochberg(p)
            continue
        keep = (_cpm(_arithmetic_count_mean(block, is_log1p)) > cpm_filter) | (ctrl_cpm > cpm_filter)
        for name, values in columns:
            out[name][i, keep] = values[keep]
        if keep.any():
            out["fdr"][i, keep] = benjamini_hochberg(p[keep])
    return DETable(
        perts=list(groups.perts),
        genes=np.asarray(genes).astype(str),
        log2_fold_change=out["lfc"],
        p_value=out["p"],
        fdr=out["fdr"],
        target_mean=out["tm"],
        ref_mean=out["rm"],
        percent_change=out["pc"],
        statistic=out["u"],
        target_membership=members,
        ref_membership=int(ctrl_block.shape[0]),
    )


def de_from_frame(frame: pd.DataFrame, source: str) -> DETable:
    """A precomputed DE table (cell-eval's -dr/-dp CSV) as arrays; unknown pairs become NaN."""
    missing = [c for c in REQUIRED_DE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"DE table {source} lacks columns {missing} (has {list(frame.columns)})\n"
            f"    fix: provide a CSV with at least {REQUIRED_DE_COLUMNS}"
        )
    targets = frame["target"].astype(str).to_numpy()
    features = frame["feature"].astype(str).to_numpy()
    perts = sorted(set(targets))
    genes = pd.unique(features)
    p_idx = pd.Index(perts).get_indexer(targets)
    g_idx = pd.Index(genes).get_indexer(features)
    arrays = {}
    for col in ("log2_fold_change", "p_value", "fdr"):
        grid = np.full((len(perts), len(genes)), np.nan)
        grid[p_idx, g_idx] = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        arrays[col] = grid
    # a present row with a missing FDR must stay present: mark it as "not significant"
    present = np.zeros((len(perts), len(genes)), dtype=bool)
    present[p_idx, g_idx] = True
    arrays["fdr"][present & np.isnan(arrays["fdr"])] = 1.0
    return DETable(perts=perts, genes=np.asarray(genes).astype(str), **arrays)


def read_de_csv(path: str) -> DETable:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read DE table {path}: {err}\n    fix: pass a CSV written by `state eval run`") from err
    return de_from_frame(frame, path)


def align_tables(real: DETable, pred: DETable) -> tuple[DETable, DETable]:
    """Put both tables on the same perturbations and genes (cell-eval requires equal target sets)."""
    if real.perts != pred.perts:
        only_real = sorted(set(real.perts) - set(pred.perts))[:10]
        only_pred = sorted(set(pred.perts) - set(real.perts))[:10]
        raise DataError(
            f"perturbation mismatch between DE tables: only in real {only_real}, only in pred {only_pred}\n"
            "    fix: compute both DE tables on the same perturbations"
        )
    if np.array_equal(real.genes, pred.genes):
        return real, pred
    genes = np.asarray(pd.unique(np.concatenate([real.genes, pred.genes])))
    return _reindex(real, genes), _reindex(pred, genes)


def _reindex(table: DETable, genes: np.ndarray) -> DETable:
    idx = pd.Index(table.genes).get_indexer(genes)
    found = idx >= 0

    def take(grid: np.ndarray) -> np.ndarray:
        out = np.full((grid.shape[0], len(genes)), np.nan)
        out[:, found] = grid[:, idx[found]]
        return out

    return DETable(
        perts=table.perts,
        genes=genes,
        log2_fold_change=take(table.log2_fold_change),
        p_value=take(table.p_value),
        fdr=take(table.fdr),
    )
