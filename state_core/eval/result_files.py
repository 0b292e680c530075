"""Reading an evaluation outdir back as the `EvalResult` `evaluate` returned, for reports of stored runs.

Three layouts, the ones `evaluate` writes: `results.csv` (one evaluation), `<cell type>/results.csv`
(`celltype_folders=True`, what `tx predict` writes) and `<cell type>_results.csv` (cell-eval's prefixes).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from state_core.errors import ArtifactError
from state_core.eval.evaluation import EvalResult
from state_core.eval.summary import SINGLE

RESULTS, AGG, REAL_DE, PRED_DE = "results.csv", "agg_results.csv", "real_de.csv", "pred_de.csv"


def _cell_type_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Cell type -> (folder, file prefix) of each evaluation in `folder`."""
    if (folder / AGG).is_file():
        return {SINGLE: (folder, "")}
    found = {p.parent.name: (p.parent, "") for p in sorted(folder.glob(f"*/{AGG}"))}
    found.update({p.name[: -len("_" + AGG)]: (folder, p.name[: -len(AGG)]) for p in sorted(folder.glob(f"*_{AGG}"))})
    return found


def read_result(folder: str | Path) -> EvalResult:
    """The evaluation stored in `folder`; tables carry a `celltype` column when there are cell types."""
    root = Path(folder)
    places = _cell_type_files(root)
    if not places:
        raise ArtifactError(
            f"{root}: no {AGG} here or in its sub-folders\n"
            "    fix: point at the outdir of `state eval run` or the eval folder of `state tx predict`"
        )
    results, aggs = [], []
    for cell_type, (where, prefix) in places.items():
        res_path = where / f"{prefix}{RESULTS}"
        if not res_path.is_file():
            raise ArtifactError(f"{res_path} not found next to {prefix}{AGG}\n    fix: rerun the evaluation")
        res = pd.read_csv(res_path, dtype={"perturbation": str})
        agg = pd.read_csv(where / f"{prefix}{AGG}")
        if cell_type != SINGLE:
            res, agg = res.assign(celltype=cell_type), agg.assign(celltype=cell_type)
        results.append(res)
        aggs.append(agg)
    if list(places) == [SINGLE]:
        return EvalResult(results[0], aggs[0])
    first = lambda f: f[["celltype"] + [c for c in f.columns if c != "celltype"]]  # noqa: E731
    return EvalResult(first(pd.concat(results, ignore_index=True)), first(pd.concat(aggs, ignore_index=True)))


def read_de_tables(folder: str | Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Cell type -> (real DE, predicted DE) where both tables were written."""
    tables = {}
    for cell_type, (where, prefix) in _cell_type_files(Path(folder)).items():
        real, pred = where / f"{prefix}{REAL_DE}", where / f"{prefix}{PRED_DE}"
        if real.is_file() and pred.is_file():
            tables[cell_type] = (pd.read_csv(real, dtype={"target": str}), pd.read_csv(pred, dtype={"target": str}))
    return tables


__all__ = ["read_de_tables", "read_result"]
