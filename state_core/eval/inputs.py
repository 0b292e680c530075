"""Loading and checking the (predicted, real) AnnData pair, the way cell-eval does.

Unlike cell-eval, user objects are never modified in place: casts and the counts -> log1p conversion
work on a copy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from state_core.data.features import nonfinite_text
from state_core.errors import DataError

log = logging.getLogger(__name__)

# cell-eval's log1p guess: any entry with a fractional part above this means "already log1p".
FRACTION_EPS = 1e-3
# A log1p value at or above this is implausible (e^15 counts in one gene).
MAX_LOG1P = 15.0


Matrix = np.ndarray | sp.csr_matrix


@dataclass(frozen=True)
class CellData:
    """What evaluation reads from an AnnData: X, some obs columns, gene names, obsm arrays."""

    x: Matrix  # [N, G]
    obs: pd.DataFrame  # [N, columns]
    var_names: np.ndarray  # [G] str
    obsm: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "X"  # where x came from, for messages: "<file>: X", "<file>: obsm:X_hvg_pred"

    @property
    def n_obs(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_vars(self) -> int:
        return int(self.x.shape[1])

    def subset(self, mask: np.ndarray) -> CellData:
        rows = np.flatnonzero(mask)
        return CellData(
            self.x[rows], self.obs.iloc[rows].reset_index(drop=True), self.var_names,
            {k: np.asarray(v)[rows] for k, v in self.obsm.items()}, self.source,
        )  # fmt: skip

    def with_x(self, x: Matrix) -> CellData:
        return replace(self, x=x)


def _read_h5ad_matrix(node: Any) -> Matrix:
    """X as stored: a CSR group (data/indices/indptr) or a dense dataset."""
    import h5py

    if isinstance(node, h5py.Dataset):
        return node[()]
    encoding = node.attrs.get("encoding-type", "")
    encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    shape = tuple(int(v) for v in node.attrs["shape"])
    parts = (node["data"][()], node["indices"][()], node["indptr"][()])
    if encoding == "csc_matrix":
        return sp.csc_matrix(parts, shape=shape).tocsr()
    return sp.csr_matrix(parts, shape=shape)


def _read_h5ad(path: Path, columns: list[str], embed_key: str | None) -> CellData:
    """Read only what evaluation needs, without importing anndata (about a second of start-up)."""
    import h5py

    from state_core.data.h5ad import read_obs_labels, read_var_names

    obs = pd.DataFrame({c: read_obs_labels(path, c).values() for c in dict.fromkeys(columns)})
    genes = np.asarray(read_var_names(path), dtype=str)
    with h5py.File(path, "r") as file:
        if "X" not in file:
            raise DataError(f"{path} has no X\n    fix: store the expression matrix in X")
        x = _read_h5ad_matrix(file["X"])
        obsm = {}
        if embed_key is not None:
            if f"obsm/{embed_key}" not in file:
                have = list(file["obsm"].keys()) if "obsm" in file else []
                raise DataError(
                    f"embed key {embed_key!r} not in obsm of {path}; keys: {have}\n"
                    "    fix: pass --embed-key with one of those keys or leave it out"
                )
            obsm[embed_key] = np.asarray(file[f"obsm/{embed_key}"][()])
    return CellData(x=x, obs=obs, var_names=genes, obsm=obsm, source=f"{path}: X")


def load_cells(source: Any, role: str, columns: list[str], embed_key: str | None = None) -> CellData:
    """An AnnData (used as is, never modified) or an .h5ad path (read with h5py) as `CellData`. NaN/Inf in
    the obsm matrix is refused here, on the array just read; X is checked in `prepared`."""
    if isinstance(source, CellData):
        return source
    cells, name = _load_cells(source, role, columns, embed_key)
    for key, values in cells.obsm.items():
        _require_finite(np.asarray(values), f"{name}: obsm/{key}")
    return cells


def _load_cells(source: Any, role: str, columns: list[str], embed_key: str | None) -> tuple[CellData, str]:
    """`CellData` of an AnnData or an .h5ad path, and the name messages call it by."""
    if hasattr(source, "X") and hasattr(source, "obs") and hasattr(source, "var_names"):
        if embed_key is not None and embed_key not in source.obsm:
            raise DataError(
                f"embed key {embed_key!r} not in {role} obsm; keys: {list(source.obsm.keys())}\n"
                "    fix: pass --embed-key with one of those keys or leave it out"
            )
        obsm = {embed_key: source.obsm[embed_key]} if embed_key is not None else {}
        name = getattr(source, "filename", None) or f"the {role} AnnData"
        cells = CellData(
            x=source.X,
            obs=source.obs,
            var_names=np.asarray(source.var_names).astype(str),
            obsm=obsm,
            source=f"{name}: X",
        )
        return cells, str(name)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{role} AnnData file not found: {path}\n    fix: pass an existing .h5ad path")
    try:
        return _read_h5ad(path, columns, embed_key), str(path)
    except (OSError, KeyError) as err:
        raise DataError(f"cannot read {role} AnnData {path}: {err}\n    fix: pass a valid .h5ad file") from err


def label_array(adata: CellData, pert_col: str, role: str) -> np.ndarray:
    if pert_col not in adata.obs.columns:
        raise DataError(
            f"perturbation column {pert_col!r} not in {role} obs; columns: {list(adata.obs.columns)}\n"
            f"    fix: pass --pert-col with one of those names"
        )
    return adata.obs[pert_col].to_numpy().astype(str)


def check_pair(
    real: CellData,
    pred: CellData,
    *,
    pert_col: str,
    control_pert: str,
    embed_key: str | None = None,
) -> None:
    """cell-eval's input checks, as `DataError`s that say what to change."""
    if real.n_vars != pred.n_vars:
        raise DataError(
            f"gene count differs: real has {real.n_vars}, pred has {pred.n_vars}\n"
            "    fix: subset both files to the same genes in the same order"
        )
    real_genes = np.asarray(real.var_names)
    pred_genes = np.asarray(pred.var_names)
    if not np.array_equal(real_genes, pred_genes):
        first = int(np.flatnonzero(real_genes != pred_genes)[0])
        raise DataError(
            f"gene names or order differ (first at position {first}: real {real_genes[first]!r}, "
            f"pred {pred_genes[first]!r})\n    fix: reorder pred with pred[:, real.var_names]"
        )
    if embed_key is not None:
        for role, adata in (("real", real), ("pred", pred)):
            if embed_key not in adata.obsm:
                raise DataError(
                    f"embed key {embed_key!r} not in {role} obsm; keys: {list(adata.obsm.keys())}\n"
                    "    fix: pass --embed-key with one of those keys or leave it out"
                )
    real_labels = set(label_array(real, pert_col, "real"))
    pred_labels = set(label_array(pred, pert_col, "pred"))
    if real_labels != pred_labels:
        only_real = sorted(real_labels - pred_labels)[:10]
        only_pred = sorted(pred_labels - real_labels)[:10]
        raise DataError(
            f"perturbation sets differ in {pert_col!r}: only in real {only_real}, only in pred {only_pred}\n"
            "    fix: predict every perturbation of the real file (and no others)"
        )
    if control_pert not in real_labels:
        raise DataError(
            f"control {control_pert!r} not found in {pert_col!r} (labels: {sorted(real_labels)[:10]} ...)\n"
            "    fix: pass --control-pert with the control label used in both files"
        )
    if len(real_labels) < 2:
        raise DataError(f"only the control is present in {pert_col!r}; nothing to evaluate")


def _matrix_values(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    return x.data if sp.issparse(x) else np.asarray(x)


def _has_decimals(values: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Any fractional part above FRACTION_EPS? Scans in chunks and stops at the first hit."""
    for lo in range(0, values.size, chunk):
        part = values[lo : lo + chunk]
        if bool(np.any(part - np.floor(part) > FRACTION_EPS)):
            return True
    return False


def is_log1p(adata: CellData, role: str, allow_discrete: bool = False, allow_negative: bool = False) -> bool:
    """True when `X` already holds log1p values; False for integer counts. Bad scales raise.

    `allow_negative` (predictions only): a model that adds a shift to log-expression without clipping, such as
    perturb_mean, can predict values below 0; they are scored as they are (count-space means are floored at
    0 for fold changes) instead of being refused.
    """
    values = _matrix_values(adata.x)
    if values.size == 0:
        return True
    if not _has_decimals(values.ravel()):
        return False
    lo, hi = float(values.min()), float(values.max())
    if sp.issparse(adata.x) and adata.x.nnz < np.prod(adata.x.shape):
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if lo < 0 and allow_negative:
        log.warning("%s X has negative values (min %.3g): scored as predicted log1p values", role, lo)
    elif lo < 0:
        raise DataError(f"{role} X has negative values (min {lo:.3g})\n    fix: pass counts or log1p-normalised values")
    if not allow_discrete and hi >= MAX_LOG1P:
        raise DataError(
            f"{role} X has decimals but max {hi:.3g} >= {MAX_LOG1P}, not a log1p scale\n"
            "    fix: log1p-normalise X, or pass --allow-discrete if these are normalised counts"
        )
    return True


def prepared(adata: CellData, role: str, allow_discrete: bool = False, allow_negative: bool = False) -> CellData:
    """`adata` ready for evaluation, copied only where needed: float32 for float16, CSR, log1p scale."""
    x = adata.x
    if x is None:
        raise DataError(f"{role} AnnData has no X\n    fix: store the expression matrix in X")
    if sp.issparse(x) and not isinstance(x, sp.csr_matrix):
        x = sp.csr_matrix(x)
    elif not sp.issparse(x):
        x = np.asarray(x)
    if x.dtype == np.float16:
        x = x.astype(np.float32)  # numba (cell-eval) cannot use float16 either
    _require_finite(x, adata.source)
    out = adata.with_x(x)
    if is_log1p(out, role, allow_discrete, allow_negative) or allow_discrete:
        return out
    log.info("%s X holds integer counts: normalising to the median library size and applying log1p", role)
    return out.with_x(normalise_log1p(x))


def _require_finite(x: Matrix, source: str) -> None:
    """NaN/Inf would make every metric silently NaN: refuse, naming the file, matrix and cell count."""
    values = _matrix_values(x)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    if sp.issparse(x):
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[bad.ravel()]
        bad_cells = np.unique(rows).size
    else:
        bad_cells = int(bad.reshape(x.shape[0], -1).any(axis=1).sum())
    raise DataError(nonfinite_text(source, int(bad.sum()), bad_cells, f"all {x.shape[0]} cells checked"))


def normalise_log1p(x: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    """scanpy's normalize_total(target_sum=median library size) followed by log1p, on a copy."""
    if sp.issparse(x):
        lib = np.asarray(x.sum(axis=1)).ravel().astype(np.float64)
    else:
        lib = np.asarray(x, dtype=np.float64).sum(axis=1)
    target = float(np.median(lib[lib > 0])) if np.any(lib > 0) else 1.0
    scale = np.where(lib > 0, target / np.where(lib > 0, lib, 1.0), 1.0)
    if sp.issparse(x):
        out = sp.csr_matrix(x, dtype=np.float32, copy=True)
        out.data *= np.repeat(scale, np.diff(out.indptr)).astype(np.float32)
        np.log1p(out.data, out=out.data)
        return out
    return np.log1p(np.asarray(x, dtype=np.float32) * scale[:, None].astype(np.float32))


@dataclass(frozen=True)
class Groups:
    """Row indices of every perturbation; `perts` are the sorted non-control labels."""

    perts: list[str]
    control: str
    rows: dict[str, np.ndarray]

    @classmethod
    def build(cls, labels: np.ndarray, control: str) -> Groups:
        uniq, inverse = np.unique(labels, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
        rows = {str(u): order[bounds[i] : bounds[i + 1]] for i, u in enumerate(uniq)}
        return cls(perts=[str(u) for u in uniq if u != control], control=control, rows=rows)


def dense_rows(x: np.ndarray | sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """The cells `rows` of `x` as a dense array in the stored dtype: [n, G]."""
    block = x[rows]
    return block.toarray() if sp.issparse(block) else np.asarray(block)
