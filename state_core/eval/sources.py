"""Where the predicted and the real matrices live in their .h5ad files, and the self-scoring guard.

`tx infer` keeps its input in `X` and `obsm[embed_key]` and writes predictions to `obsm[pred_key]`, with
`uns["state_infer"]` saying which keys it used. Scoring `X` of such a file against the real cells scores
the real cells against themselves, so the prediction location is explicit (`obsm:KEY`, `layer:KEY`, `X`),
read from that metadata when present, and an identical pair of matrices is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from state_core.errors import DataError
from state_core.eval.inputs import CellData, _read_h5ad_matrix

if TYPE_CHECKING:
    from state_core.eval.evaluation import EvalResult

INFER_METADATA = "state_infer"  # uns key written by `tx infer` (see state_core/train/infer.py)
KINDS = ("X", "obsm", "layer")


@dataclass(frozen=True)
class MatrixKey:
    """One matrix of an AnnData: `X`, `obsm:<name>` or `layer:<name>`."""

    kind: str
    name: str = ""

    @classmethod
    def parse(cls, text: str, flag: str) -> MatrixKey:
        if text == "X":
            return cls("X")
        kind, _, name = text.partition(":")
        if kind not in ("obsm", "layer") or not name:
            raise DataError(
                f"{flag} {text!r} is not a matrix location\n"
                f"    fix: use X, obsm:<key> (e.g. obsm:X_hvg_pred) or layer:<key>"
            )
        return cls(kind, name)

    def h5_path(self) -> str:
        return "X" if self.kind == "X" else f"{'obsm' if self.kind == 'obsm' else 'layers'}/{self.name}"

    def __str__(self) -> str:
        return "X" if self.kind == "X" else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class PairKeys:
    """The resolved locations and where they came from (`explicit`, `tx infer metadata`, `default`)."""

    pred: MatrixKey
    real: MatrixKey
    origin: str
    feature_names: tuple[str, ...] = ()  # names of an obsm space (tx infer's feature names), if known


def _open(path: str | Path, role: str):  # noqa: ANN202 - h5py.File, imported lazily
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"cannot read {role} AnnData {path}: {err}\n    fix: pass a valid .h5ad file") from err


def read_infer_metadata(path: str | Path) -> dict[str, object]:
    """`uns["state_infer"]` of a `tx infer` output as plain values ({} when absent)."""
    with _open(path, "pred") as file:
        node = file.get(f"uns/{INFER_METADATA}")
        if node is None or not hasattr(node, "keys"):
            return {}
        meta: dict[str, object] = {}
        for name in node.keys():
            item = node[name]
            if not hasattr(item, "shape"):
                continue
            value = item[()]
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, np.ndarray):
                value = [v.decode() if isinstance(v, bytes) else v for v in value.tolist()]
            meta[name] = value
        return meta


def resolve_keys(pred_path: str | Path, pred_key: str | None, real_key: str | None) -> PairKeys:
    """Explicit flags win; else `tx infer`'s metadata (pred `obsm[pred_key]` vs real `obsm[embed_key]`);
    else `X` against `X` as cell-eval does."""
    meta = read_infer_metadata(pred_path) if Path(pred_path).is_file() else {}
    names = tuple(str(v) for v in meta.get("feature_names", []) or [])
    if pred_key is not None:
        pred = MatrixKey.parse(pred_key, "--pred-key")
        real = MatrixKey.parse(real_key, "--real-key") if real_key else _real_for(pred, meta)
        return PairKeys(pred, real, "explicit", names)
    if meta.get("pred_key"):
        pred = MatrixKey("obsm", str(meta["pred_key"]))
        real = MatrixKey.parse(real_key, "--real-key") if real_key else _real_for(pred, meta)
        return PairKeys(pred, real, "tx infer metadata", names)
    real = MatrixKey.parse(real_key, "--real-key") if real_key else MatrixKey("X")
    return PairKeys(MatrixKey("X"), real, "default", names)


def _real_for(pred: MatrixKey, meta: dict[str, object]) -> MatrixKey:
    """An obsm prediction is in the space of the features the model read: score it against those."""
    if pred.kind != "obsm":
        return MatrixKey("X")
    embed_key = str(meta.get("embed_key") or "")
    if embed_key and embed_key != "X" and pred.name == meta.get("pred_key"):
        return MatrixKey("obsm", embed_key)
    if embed_key == "X":
        return MatrixKey("X")
    if pred.name.endswith("_pred"):  # the default naming of tx infer: <embed_key>_pred
        return MatrixKey("obsm", pred.name[: -len("_pred")])
    raise DataError(
        f"cannot tell which real matrix {pred} is to be scored against\n"
        "    fix: pass --real-key, e.g. --real-key obsm:X_hvg"
    )


def read_cells(
    path: str | Path, key: MatrixKey, columns: list[str], role: str, feature_names: tuple[str, ...] = ()
) -> CellData:
    """The matrix `key` of `path` with the obs `columns`, as evaluation reads it."""
    from state_core.data.h5ad import read_obs_labels, read_var_names

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{role} AnnData file not found: {path}\n    fix: pass an existing .h5ad path")
    with _open(path, role) as file:
        if key.kind == "X" and "X" not in file:
            raise DataError(f"{path} has no X\n    fix: store the expression matrix in X")
        if key.h5_path() not in file:
            group = "obsm" if key.kind == "obsm" else "layers"
            have = sorted(file[group].keys()) if key.kind != "X" and group in file else []
            raise DataError(
                f"{role} file {path} has no {key} (its {group}: {have})\n"
                f"    fix: pass --{role}-key with one of those, e.g. obsm:X_hvg_pred for `tx infer` output"
            )
        x = _read_h5ad_matrix(file[key.h5_path()])
    obs = pd.DataFrame({c: read_obs_labels(path, c).values() for c in dict.fromkeys(columns)})
    if key.kind == "obsm":
        width = x.shape[1]
        # an obsm space has no var names; both sides of a pair get the same names so they line up
        names = feature_names if len(feature_names) == width else tuple(f"feature_{i}" for i in range(width))
    else:
        names = tuple(read_var_names(path))
    return CellData(x=x, obs=obs, var_names=np.asarray(names, dtype=str), source=f"{path}: {key}")


def refuse_self_scoring(pred: CellData, real: CellData, keys: PairKeys, pred_path: str | Path) -> None:
    """Identical predicted and real matrices mean the real cells would be scored against themselves."""
    if pred.x.shape != real.x.shape or not _same_values(pred.x, real.x):
        return
    hint = (
        "`tx infer` writes its predictions to obsm[<embed_key>_pred]: pass --pred-key obsm:X_hvg_pred "
        "(or the key it printed)"
    )
    raise DataError(
        f"predicted {keys.pred} of {pred_path} is identical to real {keys.real}: this would score the "
        f"real cells against themselves (every metric perfect)\n    fix: {hint}"
    )


def _same_values(a: np.ndarray | sp.csr_matrix, b: np.ndarray | sp.csr_matrix, rows: int = 1024) -> bool:
    """Equal matrices of equal shape, compared a block of rows at a time: a real prediction differs in
    its first block, so the usual case costs one small dense block, not two whole dense copies."""
    for start in range(0, a.shape[0], rows):
        block_a, block_b = (m[start : start + rows] for m in (a, b))
        dense_a = block_a.toarray() if sp.issparse(block_a) else np.asarray(block_a)
        dense_b = block_b.toarray() if sp.issparse(block_b) else np.asarray(block_b)
        if not np.array_equal(dense_a, dense_b):
            return False
    return True


def evaluate_files(
    adata_pred: str | Path,
    adata_real: str | Path,
    *,
    pred_key: str | None = None,
    real_key: str | None = None,
    pert_col: str = "gene",
    celltype_col: str | None = None,
    embed_key: str | None = None,
    report: bool = True,
    **options: Any,
) -> tuple[EvalResult, PairKeys]:
    """`state eval run`: resolve where the predictions are, refuse self-scoring, evaluate, write the report.

    `options` go to `state_core.eval.evaluate` (profile, outdir, control_pert, ...).
    """
    from state_core.eval.evaluation import evaluate
    from state_core.eval.report import write_report

    keys = resolve_keys(adata_pred, pred_key, real_key)
    columns = [pert_col] + ([celltype_col] if celltype_col else [])
    pred = read_cells(adata_pred, keys.pred, columns, "pred", keys.feature_names)
    real = read_cells(adata_real, keys.real, columns, "real", keys.feature_names)
    refuse_self_scoring(pred, real, keys, adata_pred)
    if embed_key is not None:
        pred, real = (
            _with_obsm(c, p, embed_key, role) for c, p, role in ((pred, adata_pred, "pred"), (real, adata_real, "real"))
        )
    result = evaluate(pred, real, pert_col=pert_col, celltype_col=celltype_col, embed_key=embed_key, **options)
    outdir = options.get("outdir")
    if report and outdir is not None:
        write_report(outdir)
    return result, keys


def _with_obsm(cells: CellData, path: str | Path, embed_key: str, role: str) -> CellData:
    from dataclasses import replace

    from state_core.eval.inputs import load_cells

    return replace(cells, obsm=load_cells(path, role, [], embed_key).obsm)


__all__ = [
    "INFER_METADATA",
    "MatrixKey",
    "PairKeys",
    "evaluate_files",
    "read_cells",
    "read_infer_metadata",
    "refuse_self_scoring",
    "resolve_keys",
]
