"""`state tx predict`: predict the TOML test split of a run and evaluate it.

Writes `<run>/eval_<checkpoint>/adata_pred.h5ad` and `adata_real.h5ad`: one row per test cell (each real
cell exactly once, in sets cut from its (cell type, perturbation) group with a mask, never padded with
copies), obs labels stored as labels (not stringified one-hots), predictions in `X` (gene space when the
model has one) and the latent in `obsm[embed_key]`; then cell-eval-compatible metrics per cell type
through `state_core.eval` (the one evaluation path), returned by `predict_and_evaluate`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from state_core.atomic import atomic_write_text, write_h5ad_atomic
from state_core.data.splits import SplitManifest
from state_core.errors import ArtifactError, DataError
from state_core.eval.evaluation import EvalResult
from state_core.eval.summary import MetricSummary
from state_core.runs.layout import SPLIT_DIR
from state_core.runs.load import load_run
from state_core.storage import is_gcs
from state_core.train.data_setup import prepare_run_data

log = logging.getLogger(__name__)


def _collect(model: torch.nn.Module, loader) -> dict[str, np.ndarray]:  # noqa: ANN001 - DataLoader
    """Run every test batch; returns per-cell arrays (padding dropped)."""
    parts: dict[str, list[np.ndarray]] = {"cell_id": [], "pred": [], "real": [], "pred_genes": [], "real_genes": []}
    with torch.no_grad():
        for batch in loader:
            out = model(batch.ctrl, batch.pert_idx, batch.batch_idx, batch.mask, batch.cell_type_idx)
            m = batch.mask
            parts["cell_id"].append(batch.cell_id[m].numpy())
            parts["pred"].append(out.latent[m].float().numpy())
            parts["real"].append(batch.target[m].float().numpy())
            if out.genes is not None:
                parts["pred_genes"].append(out.genes[m].float().numpy())
            if getattr(batch, "target_genes", None) is not None:
                parts["real_genes"].append(batch.target_genes[m].float().numpy())
    if not parts["cell_id"]:
        raise ArtifactError("the run's test split is empty; add [zeroshot] or [fewshot] test entries to the TOML")
    return {k: np.concatenate(v) for k, v in parts.items() if v}


def _adata(x: np.ndarray, latent: np.ndarray, obs: pd.DataFrame, var_names, embed_key: str) -> ad.AnnData:  # noqa: ANN001
    adata = ad.AnnData(X=x.astype(np.float32), obs=obs.copy())
    if len(var_names) == x.shape[1]:
        adata.var_names = [str(v) for v in var_names]
    adata.obsm[embed_key] = latent.astype(np.float32)
    return adata


def check_test_data(manifest: SplitManifest, embed_key: str) -> None:
    """The run's data files must still exist, hold at least the rows the split names and be finite there
    (a file replaced or deleted since training is one clear error, not an index error or NaN metrics)."""
    from state_core.data.features import nonfinite_message
    from state_core.data.h5ad import n_obs

    for entry in manifest.files:
        if is_gcs(str(entry.path)):
            continue  # read through the download cache; checked by the loader
        if not Path(entry.path).is_file():
            raise DataError(
                f"{entry.path}: data file of this run is missing (it was moved or deleted after "
                f"training); restore it or retrain"
            )
        rows = entry.test
        if rows.size and n_obs(entry.path) <= int(rows.max()):
            raise DataError(
                f"{entry.path}: has {n_obs(entry.path)} cells but the run's split uses row {int(rows.max())}; "
                f"the file was replaced after training (restore it or retrain)"
            )
        message = nonfinite_message(entry.path, embed_key, rows) if rows.size else None
        if message:
            raise DataError(message)


@dataclass(frozen=True)
class TestSplitResult:
    """The folder with the AnnData files (and metrics), and the evaluator's result when it ran."""

    folder: Path
    evaluation: EvalResult | None = None  # per-perturbation tables with a `celltype` column
    summary: MetricSummary | None = None  # one number per metric (state_core.eval.summary's NaN rule)


def predict_test_split(
    run_dir: str | Path,
    *,
    checkpoint: str = "final",
    profile: str = "full",
    evaluate: bool = True,
    out_dir: str | Path | None = None,
) -> Path:
    """Predict the test split of `run_dir`; returns the folder with the AnnData files and metrics."""
    return predict_and_evaluate(
        run_dir, checkpoint=checkpoint, profile=profile, evaluate=evaluate, out_dir=out_dir
    ).folder


def predict_and_evaluate(
    run_dir: str | Path,
    *,
    checkpoint: str = "final",
    profile: str = "full",
    evaluate: bool = True,
    out_dir: str | Path | None = None,
) -> TestSplitResult:
    """`predict_test_split`, returning the evaluation too (None when skipped)."""
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ArtifactError(f"--eval_dir {out_dir} is a file; give a folder (it is created if missing)")
    run = load_run(run_dir, checkpoint=checkpoint)
    run_dir = Path(run_dir)
    manifest = SplitManifest.load(run_dir / SPLIT_DIR)
    check_test_data(manifest, run.vocab.embed_key)
    data = prepare_run_data(run.config, manifest, run.vocab, run.model_config.cell_set_len)
    arrays = _collect(run.model, data.datamodule.test_dataloader())
    labels = data.datamodule.row_labels(arrays["cell_id"])  # DataFrame: pert_col, cell_type_key, batch_col
    vocab = run.vocab
    has_genes = "pred_genes" in arrays and "real_genes" in arrays
    names = vocab.gene_names if has_genes else vocab.feature_names
    pred_x = arrays["pred_genes"] if has_genes else arrays["pred"]
    real_x = arrays["real_genes"] if has_genes else arrays["real"]
    key = vocab.embed_key
    name = Path(checkpoint).stem if checkpoint not in ("final",) else "final"
    out = Path(out_dir) if out_dir else run_dir / f"eval_{name}"
    out.mkdir(parents=True, exist_ok=True)
    pred, real = _adata(pred_x, arrays["pred"], labels, names, key), _adata(real_x, arrays["real"], labels, names, key)
    write_h5ad_atomic(pred, out / "adata_pred.h5ad")
    write_h5ad_atomic(real, out / "adata_real.h5ad")
    log.info("wrote %d test cells to %s", pred.n_obs, out)
    if evaluate and not has_genes and key not in ("X", "X_hvg"):
        # cell-eval metrics assume log-normalised expression; an embedding-space model (e.g. X_state with
        # output_space=embedding) has none to compare, so say so instead of failing on negative values.
        log.warning(
            "predictions are %s embeddings, not expression: metrics skipped (train with "
            "output_space=gene or all to get a gene decoder whose output can be evaluated)",
            key,
        )
        evaluate = False
    if not evaluate:
        return TestSplitResult(out)
    return TestSplitResult(out, *evaluate_by_cell_type(pred, real, vocab, profile, out))


def evaluate_by_cell_type(
    pred: ad.AnnData,
    real: ad.AnnData,
    vocab,
    profile: str,  # noqa: ANN001 - Vocab
    out: Path,
) -> tuple[EvalResult, MetricSummary]:
    """Evaluate each test cell type on its own (its own controls), as the original `tx predict` did.

    Writes `<out>/<cell type>/{results,agg_results,real_de,pred_de}.csv`, one `report.{html,md}` for all
    cell types and `metrics.json` (`MetricSummary.to_json_dict`: finite means per cell type and over cell
    types, undefined metrics with their reason).
    """
    from state_core.eval import evaluate as run_eval
    from state_core.eval import write_report
    from state_core.eval.summary import summarize

    result = run_eval(
        pred,
        real,
        pert_col=vocab.pert_col,
        control_pert=vocab.control_pert,
        profile=profile,
        outdir=out,
        celltype_col=vocab.cell_type_key,
        celltype_folders=True,
    )
    summary = summarize(result)
    atomic_write_text(out / "metrics.json", json.dumps(summary.to_json_dict(profile), indent=2, allow_nan=False))
    write_report(out)
    return result, summary
