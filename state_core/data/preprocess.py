"""Preprocessing before training (`state tx preprocess_train`) and inference (`state tx preprocess_infer`).

`preprocess_train`: normalise every cell to the MEDIAN library size, log1p, pick the top-K highly variable
genes (seurat flavour on log data, as scanpy computes it) and store them densely in `obsm["X_hvg"]` in var
order. Unlike the original, the raw counts are kept in `layers["counts"]`, the HVG names are persisted in
`uns["hvg_names"]`, and input that is already log-normalised is refused unless the caller says so.

`preprocess_infer`: the "control template". Each perturbed cell's `X` row, layer rows and EVERY `obsm` row
(X_hvg, X_state, ...) are replaced by those of a control cell of the same cell type (and batch, when asked),
drawn with a seeded generator. The original drew controls from all cell types and left `obsm` untouched.
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

log = logging.getLogger(__name__)

HVG_KEY = "X_hvg"
COUNTS_LAYER = "counts"
_N_DISPERSION_BINS = 20  # scanpy's default for flavor="seurat"
_ROWS_CHECKED_FOR_COUNTS = 2000


# ---------------------------------------------------------------------------------------------------
# File I/O


def read_h5ad(path: str | Path) -> ad.AnnData:
    """Read a whole h5ad file, turning a missing or unreadable file into a `DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such h5ad file; check the --adata path")
    try:
        return ad.read_h5ad(path)
    except OSError as err:  # h5py raises OSError for truncated / non-HDF5 files
        raise DataError(f"{path}: cannot be read as h5ad ({err}); is it an AnnData HDF5 file?") from err


# ---------------------------------------------------------------------------------------------------
# preprocess_train


def _row_totals(X: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(X.sum(axis=1), dtype=np.float64).ravel()  # [N]


def _check_raw_counts(adata: ad.AnnData, source: str) -> None:
    """Refuse data that is already normalised: normalising twice silently ruins every downstream number."""
    hint = (
        "pass already_normalized=True (CLI: --already-normalized) if X is already log-normalised, "
        "or give the file with raw counts"
    )
    if "log1p" in adata.uns:
        raise DataError(f"{source}: uns['log1p'] is present, so X is already log-transformed; {hint}")
    X = adata.X[: min(adata.n_obs, _ROWS_CHECKED_FOR_COUNTS)]
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    if values.size == 0:
        return
    if values.min() < 0:
        raise DataError(f"{source}: X has negative values (min {values.min():.3g}), so it is not raw counts; {hint}")
    fractional = values[values != np.round(values)]
    if fractional.size:
        raise DataError(
            f"{source}: X has non-integer values (e.g. {fractional[0]:.4g}), so it looks normalised, "
            f"not raw counts; {hint}"
        )


def normalize_to_median(X: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Scale each cell to the median total count of the non-empty cells (scanpy's default target)."""
    totals = _row_totals(X)
    nonzero = totals > 0
    if not nonzero.any():
        raise DataError("every cell has a total count of 0; nothing to normalise")
    target = float(np.median(totals[nonzero]))
    scale = np.where(nonzero, target / np.where(nonzero, totals, 1.0), 0.0).astype(np.float32)  # [N]
    if sp.issparse(X):
        return sp.csr_matrix(sp.diags(scale) @ X, dtype=np.float32)
    return (np.asarray(X, dtype=np.float32) * scale[:, None]).astype(np.float32)


def _log1p(X: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(X):
        out = X.copy()
        out.data = np.log1p(out.data)
        return out
    return np.log1p(X)


def _mean_and_var(X: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and unbiased variance without densifying a sparse matrix."""
    n = X.shape[0]
    mean = np.asarray(X.mean(axis=0), dtype=np.float64).ravel()
    if sp.issparse(X):
        sq = X.multiply(X)
        mean_sq = np.asarray(sq.mean(axis=0), dtype=np.float64).ravel()
    else:
        mean_sq = np.mean(np.asarray(X, dtype=np.float64) ** 2, axis=0)
    var = (mean_sq - mean**2) * (n / max(n - 1, 1))
    return mean, np.maximum(var, 0.0)


def seurat_hvg_table(log_X: np.ndarray | sp.spmatrix, num_hvgs: int) -> pd.DataFrame:
    """Seurat-flavour HVG statistics on log1p data, as scanpy's `highly_variable_genes(flavor="seurat")`.

    Returns columns means, dispersions, dispersions_norm, highly_variable. Exactly `num_hvgs` genes are
    marked (ties broken by gene order) so `obsm["X_hvg"]` always has the requested width.
    """
    counts_scale = log_X.expm1() if sp.issparse(log_X) else np.expm1(np.asarray(log_X, dtype=np.float64))
    mean, var = _mean_and_var(counts_scale)
    mean[mean == 0] = 1e-12
    dispersion = var / mean
    dispersion[dispersion == 0] = np.nan
    log_dispersion = np.log(dispersion)
    log_mean = np.log1p(mean)

    bins = pd.cut(log_mean, bins=_N_DISPERSION_BINS)
    grouped = pd.Series(log_dispersion).groupby(bins, observed=False)
    bin_mean = grouped.transform("mean").to_numpy()
    bin_std = grouped.transform(lambda s: s.std(ddof=1)).to_numpy()
    # A bin holding a single gene has no spread; scanpy gives such a gene a normalised dispersion of 1.
    single = np.isnan(bin_std) & ~np.isnan(log_dispersion)
    bin_std[single], bin_mean[single] = log_dispersion[single], 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion_norm = (log_dispersion - bin_mean) / bin_std

    ranking = np.where(np.isnan(dispersion_norm), -np.inf, dispersion_norm)
    top = np.argsort(-ranking, kind="stable")[:num_hvgs]
    highly_variable = np.zeros(len(mean), dtype=bool)
    highly_variable[top] = True
    return pd.DataFrame(
        {
            "means": log_mean,
            "dispersions": log_dispersion,
            "dispersions_norm": dispersion_norm.astype(np.float32),
            "highly_variable": highly_variable,
        }
    )


def preprocess_train_adata(
    adata: ad.AnnData, num_hvgs: int, already_normalized: bool = False, source: str = "<AnnData>"
) -> ad.AnnData:
    """In-memory `preprocess_train`. Returns a new AnnData; the input is not modified.

    Adds `layers["counts"]` (raw), log-normalised `X`, `obsm["X_hvg"]` (dense float32, HVGs in var order),
    `var["highly_variable"]` (+ means/dispersions), `uns["hvg_names"]` and `uns["log1p"]`.
    """
    if not isinstance(num_hvgs, (int, np.integer)) or not 0 < num_hvgs <= adata.n_vars:
        raise DataError(f"{source}: num_hvgs={num_hvgs!r} must be an integer in [1, n_genes={adata.n_vars}]")
    out = adata.copy()
    if sp.issparse(out.X) and not sp.isspmatrix_csr(out.X):
        out.X = sp.csr_matrix(out.X)
    if not already_normalized:
        _check_raw_counts(out, source)
        out.layers[COUNTS_LAYER] = out.X.copy()
        out.X = _log1p(normalize_to_median(out.X))
        out.uns["log1p"] = {"base": None}
    table = seurat_hvg_table(out.X, int(num_hvgs))
    for column in table.columns:
        out.var[column] = table[column].to_numpy()
    mask = table["highly_variable"].to_numpy()
    hvg = out.X[:, mask]
    out.obsm[HVG_KEY] = np.asarray(hvg.toarray() if sp.issparse(hvg) else hvg, dtype=np.float32)  # [N, K]
    out.uns["hvg_names"] = np.asarray(out.var_names[mask], dtype=object)
    out.uns["hvg"] = {"flavor": "seurat"}
    return out


def preprocess_train(input: str | Path, output: str | Path, num_hvgs: int, already_normalized: bool = False) -> Path:
    """`state tx preprocess_train --adata IN --output OUT --num_hvgs K`. Returns the output path."""
    adata = read_h5ad(input)
    result = preprocess_train_adata(adata, num_hvgs, already_normalized=already_normalized, source=str(input))
    log.info(
        "preprocess_train: %d cells, %d genes -> %d HVGs in obsm['%s']", adata.n_obs, adata.n_vars, num_hvgs, HVG_KEY
    )
    return write_h5ad_atomic(result, output)


# ---------------------------------------------------------------------------------------------------
# preprocess_infer (control template)


def _require_obs_column(adata: ad.AnnData, column: str, source: str, what: str) -> pd.Series:
    if column not in adata.obs.columns:
        raise DataError(
            f"{source}: obs has no column {column!r} ({what}); available columns: {list(adata.obs.columns)}; "
            f"pass the right column name"
        )
    return adata.obs[column].astype(str)


def control_template_sources(
    adata: ad.AnnData,
    control_pert: str,
    pert_col: str,
    cell_type_key: str,
    seed: int,
    batch_col: str | None = None,
    source: str = "<AnnData>",
) -> np.ndarray:
    """Row index each cell takes its features from: itself for controls, a sampled same-cell-type control otherwise.

    With `batch_col`, the control is drawn from the same (cell type, batch) pool when that pool is non-empty.
    """
    perts = _require_obs_column(adata, pert_col, source, "pert_col").to_numpy()
    cell_types = _require_obs_column(adata, cell_type_key, source, "cell_type_key").to_numpy()
    batches = _require_obs_column(adata, batch_col, source, "batch_col").to_numpy() if batch_col else None
    is_control = perts == control_pert
    if not is_control.any():
        shown = sorted(set(perts))[:20]
        raise DataError(
            f"{source}: no cell has {pert_col}={control_pert!r}; values present include {shown}; "
            f"pass the control label used in this file (--control_condition)"
        )
    missing = sorted(set(cell_types[~is_control]) - set(cell_types[is_control]))
    if missing:
        raise DataError(
            f"{source}: cell type(s) {missing} ({cell_type_key}) have perturbed cells but no {control_pert!r} "
            f"controls, so no template can be built for them; add controls or drop those cells"
        )

    rng = np.random.default_rng(seed)
    sources = np.arange(adata.n_obs)
    for cell_type in sorted(set(cell_types[~is_control])):
        in_type = cell_types == cell_type
        targets = np.flatnonzero(in_type & ~is_control)
        type_pool = np.flatnonzero(in_type & is_control)
        if batches is None:
            sources[targets] = type_pool[rng.integers(len(type_pool), size=len(targets))]
            continue
        for batch in sorted(set(batches[targets])):
            batch_targets = targets[batches[targets] == batch]
            pool = type_pool[batches[type_pool] == batch]
            pool = pool if len(pool) else type_pool  # no control in this batch: fall back to the cell type
            sources[batch_targets] = pool[rng.integers(len(pool), size=len(batch_targets))]
    return sources


def _take_rows(matrix, rows: np.ndarray):
    if isinstance(matrix, pd.DataFrame):
        return pd.DataFrame(matrix.to_numpy()[rows], index=matrix.index, columns=matrix.columns)
    return matrix[rows]


def build_control_template(
    adata: ad.AnnData,
    control_pert: str,
    pert_col: str,
    cell_type_key: str,
    seed: int = 42,
    batch_col: str | None = None,
    source: str = "<AnnData>",
) -> ad.AnnData:
    """In-memory `preprocess_infer`: a copy whose perturbed cells carry control features; labels are kept."""
    sources = control_template_sources(adata, control_pert, pert_col, cell_type_key, seed, batch_col, source)
    out = adata.copy()
    if out.X is not None:
        out.X = _take_rows(out.X, sources)
    for key in list(out.obsm.keys()):
        out.obsm[key] = _take_rows(out.obsm[key], sources)
    for key in list(out.layers.keys()):
        out.layers[key] = _take_rows(out.layers[key], sources)
    out.uns["control_template"] = {
        "control_pert": control_pert,
        "pert_col": pert_col,
        "cell_type_key": cell_type_key,
        "batch_col": batch_col or "",
        "seed": int(seed),
    }
    return out


def preprocess_infer(
    input: str | Path,
    output: str | Path,
    control_pert: str,
    pert_col: str,
    cell_type_key: str,
    seed: int = 42,
    batch_col: str | None = None,
) -> Path:
    """`state tx preprocess_infer`: write the control template of `input` to `output`; returns the path."""
    adata = read_h5ad(input)
    template = build_control_template(adata, control_pert, pert_col, cell_type_key, seed, batch_col, str(input))
    return write_h5ad_atomic(template, output)
