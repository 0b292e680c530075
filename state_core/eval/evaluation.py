"""`evaluate`: a predicted vs a real AnnData -> cell-eval's results.csv, agg_results.csv and DE tables."""

from __future__ import annotations

import logging
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from state_core.errors import DataError
from state_core.eval.background import Deferred, Forked, background
from state_core.eval.aggregate import describe, results_frame, write_csv_atomic
from state_core.eval.csv_io import write_columns_csv
from state_core.eval.de import DETable, align_tables, compute_de, read_de_csv
from state_core.eval.de_metrics import FDR_THRESHOLD, DEComparison
from state_core.eval.inputs import CellData, Groups, check_pair, label_array, load_cells, prepared
from state_core.eval.pseudobulk import build_pseudobulk
from state_core.eval.registry import REGISTRY, Matrix, MetricContext, MetricValue, needs_de, select_metrics

if TYPE_CHECKING:
    from anndata import AnnData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """Per-perturbation metrics, their summary, and the files written (name -> path)."""

    results: pd.DataFrame
    agg: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalOptions:
    pert_col: str = "gene"
    control_pert: str = "non-targeting"
    profile: str = "full"
    embed_key: str | None = None
    skip_metrics: tuple[str, ...] = ()
    allow_discrete: bool = False
    epsilon: float = 0.0
    cpm_filter: float | None = None
    fdr_threshold: float = FDR_THRESHOLD


def evaluate(
    adata_pred: AnnData | str | Path,
    adata_real: AnnData | str | Path,
    *,
    pert_col: str = "gene",
    control_pert: str = "non-targeting",
    profile: str = "full",
    outdir: str | Path | None = None,
    embed_key: str | None = None,
    skip_metrics: tuple[str, ...] | list[str] = (),
    celltype_col: str | None = None,
    num_threads: int = 1,
    de_pred: str | Path | None = None,
    de_real: str | Path | None = None,
    allow_discrete: bool = False,
    epsilon: float = 0.0,
    cpm_filter: float | None = None,
    fdr_threshold: float = FDR_THRESHOLD,
    celltype_folders: bool = False,
) -> EvalResult:
    """Evaluate predictions against real data with cell-eval 0.8's metric definitions.

    Writes `results.csv`, `agg_results.csv` and `real_de.csv`/`pred_de.csv` (unless DE tables were
    given or the profile is `pds`) into `outdir` when it is set. With `celltype_col`, each cell type is
    evaluated on its own (its own controls) and its files are prefixed `<celltype>_` as cell-eval names
    them, or go to `<outdir>/<celltype>/` with `celltype_folders`; the returned tables then start with a
    `celltype` column (`state_core.eval.summary` reduces them to one number per metric). Inputs are
    never modified.
    """
    opts = EvalOptions(
        pert_col=pert_col,
        control_pert=control_pert,
        profile=profile,
        embed_key=embed_key,
        skip_metrics=tuple(skip_metrics),
        allow_discrete=allow_discrete,
        epsilon=epsilon,
        cpm_filter=cpm_filter,
        fdr_threshold=fdr_threshold,
    )
    metrics = select_metrics(profile, opts.skip_metrics)  # bad names fail before any work
    columns = [pert_col] + ([celltype_col] if celltype_col else [])
    real = load_cells(adata_real, "real", columns, embed_key)
    pred = load_cells(adata_pred, "pred", columns, embed_key)
    out = Path(outdir) if outdir is not None else None  # made once the inputs have passed their checks
    parallel = num_threads != 1  # the predicted DE table then runs in a forked child (state_core.eval.background)
    with threadpool_limits(limits=max(1, num_threads) if num_threads > 0 else None):
        if celltype_col is None:
            return _evaluate_one(pred, real, opts, metrics, out, "", de_pred, de_real, parallel)
        return _evaluate_by_celltype(
            pred, real, opts, metrics, out, celltype_col, de_pred, de_real, celltype_folders, parallel
        )


def _evaluate_by_celltype(
    pred: CellData,
    real: CellData,
    opts: EvalOptions,
    metrics: list[str],
    out: Path | None,
    celltype_col: str,
    de_pred: str | Path | None,
    de_real: str | Path | None,
    folders: bool,
    parallel: bool,
) -> EvalResult:
    real_types = label_array(real, celltype_col, "real")
    pred_types = label_array(pred, celltype_col, "pred")
    results, aggs, paths = [], [], {}
    for cell_type in sorted(set(real_types)):
        if not np.any(pred_types == cell_type):
            raise DataError(
                f"cell type {cell_type!r} of real {celltype_col!r} has no predicted cells\n"
                "    fix: predict every cell type of the real file"
            )
        safe = cell_type.replace("/", "-")
        where, prefix = (out / safe if out is not None else None, "") if folders else (out, safe + "_")
        one = _evaluate_one(
            pred.subset(pred_types == cell_type),
            real.subset(real_types == cell_type),
            opts,
            metrics,
            where,
            prefix,
            de_pred,
            de_real,
            parallel,
        )
        results.append(one.results.assign(celltype=cell_type))
        aggs.append(one.agg.assign(celltype=cell_type))
        paths.update({f"{cell_type}/{k}": v for k, v in one.paths.items()})
    return EvalResult(
        _celltype_first(pd.concat(results, ignore_index=True)),
        _celltype_first(pd.concat(aggs, ignore_index=True)),
        paths,
    )


def _celltype_first(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[["celltype"] + [c for c in frame.columns if c != "celltype"]]


def _evaluate_one(
    pred: CellData,
    real: CellData,
    opts: EvalOptions,
    metrics: list[str],
    out: Path | None,
    prefix: str,
    de_pred: str | Path | None,
    de_real: str | Path | None,
    parallel: bool = False,
) -> EvalResult:
    check_pair(real, pred, pert_col=opts.pert_col, control_pert=opts.control_pert, embed_key=opts.embed_key)
    real = prepared(real, "real", opts.allow_discrete)
    pred = prepared(pred, "pred", opts.allow_discrete, allow_negative=True)
    real_groups = Groups.build(label_array(real, opts.pert_col, "real"), opts.control_pert)
    pred_groups = Groups.build(label_array(pred, opts.pert_col, "pred"), opts.control_pert)
    genes = np.asarray(real.var_names).astype(str)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    de_tables: dict[str, Deferred[DETable] | Forked[DETable]] = {}

    if needs_de(opts.profile, metrics):
        for role, given, adata, groups in (("pred", de_pred, pred, pred_groups), ("real", de_real, real, real_groups)):
            if given is not None:
                de_tables[role] = Deferred(lambda given=given: read_de_csv(str(given)))
                continue
            log.info("differential expression (%s): %d perturbations x %d genes", role, len(groups.perts), genes.size)
            if out is not None:
                paths[f"{role}_de"] = out / f"{prefix}{role}_de.csv"
            job = partial(_de_table, adata.x, groups, genes, opts, paths.get(f"{role}_de"))
            # the predicted table on the second core while this process computes the real one: both are
            # single-threaded, while the metrics after them use every BLAS thread
            de_tables[role] = background(job, parallel and role == "pred")

    def de_comparison() -> DEComparison:
        real_de, pred_de = align_tables(de_tables["real"].result(), de_tables["pred"].result())
        if real_de.perts != real_groups.perts:
            raise DataError(
                f"DE tables cover {len(real_de.perts)} perturbations, the data {len(real_groups.perts)}\n"
                "    fix: pass DE tables computed on these files"
            )
        return DEComparison(real_de, pred_de, opts.fdr_threshold)

    def embed_deltas() -> tuple[np.ndarray, np.ndarray] | None:
        if opts.embed_key is None:
            return None
        pb = build_pseudobulk(
            np.asarray(real.obsm[opts.embed_key]), np.asarray(pred.obsm[opts.embed_key]), real_groups, pred_groups
        )
        return pb.real_delta, pb.pred_delta

    ctx = MetricContext(
        perts=real_groups.perts,
        genes=genes,
        de=de_comparison,
        pseudobulk=lambda: build_pseudobulk(real.x, pred.x, real_groups, pred_groups),
        cells=lambda: (real.x, pred.x, real_groups, pred_groups),
        embed=embed_deltas,
    )
    columns: dict[str, MetricValue] = {}
    try:
        if parallel and "real" in de_tables:
            de_tables["real"].result()  # now, beside the child, not later beside the multi-threaded metrics
        for name in metrics:
            log.info("metric %s", name)
            columns.update(REGISTRY[name].compute(ctx))
        for table in de_tables.values():
            table.result()  # written even when no metric needed it
    except BaseException:
        for table in de_tables.values():
            table.cancel()
        raise

    results = results_frame(real_groups.perts, columns)
    agg = describe(columns)
    if out is not None:
        paths["results"] = out / f"{prefix}results.csv"
        paths["agg_results"] = out / f"{prefix}agg_results.csv"
        write_csv_atomic(results, paths["results"], {k: v.null for k, v in columns.items()})
        write_csv_atomic(agg, paths["agg_results"])
    return EvalResult(results, agg, paths)


def _de_table(x: Matrix, groups: Groups, genes: np.ndarray, opts: EvalOptions, path: Path | None) -> DETable:
    table = compute_de(
        x, groups, genes, is_log1p=not opts.allow_discrete, epsilon=opts.epsilon, cpm_filter=opts.cpm_filter
    )
    if path is not None:
        _write_de(table, path)
    return table


def _write_de(table: DETable, path: Path) -> None:
    write_columns_csv(table.long_columns(), path)


__all__ = ["EvalResult", "evaluate"]
