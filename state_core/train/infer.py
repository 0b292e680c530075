"""`state tx infer`: apply a trained model to a new AnnData.

Each cell's `pert_col` label names the perturbation to apply. Cells are grouped by (cell type,
perturbation) so a set never mixes them (fix of state#187); every cell gets a basal cell: a control of the
same cell type from the input (`basal="sample"`, seeded) or the cell itself (`basal="self"`, for control
templates made by `preprocess_infer`). Groups are cut into chunks of at most `cell_set_len` cells of nearly
equal size; chunks are batched with a key-padding mask, so padding never influences real cells.
Predictions go to `obsm[pred_key]` (default `<embed_key>_pred`), never over `X`; `uns["state_infer"]` says
which keys were used, so `state eval run` scores the predictions, not the input. `--eval_pair DIR` also writes
the evaluation-ready pair `DIR/adata_pred.h5ad` + `DIR/adata_real.h5ad`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

from state_core.atomic import write_h5ad_atomic
from state_core.data.h5ad import read_h5ad_file
from state_core.errors import ConfigError, DataError, Problem, UnknownLabelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferOptions:
    pert_col: str | None = None  # None: the column the model was trained with
    embed_key: str | None = None
    celltype_col: str | None = None
    batch_col: str | None = None
    control_pert: str | None = None
    seed: int = 0
    basal: str = "sample"  # sample | self
    pred_key: str | None = None
    batch_size: int = 16  # sets per forward pass
    celltypes: list[str] | None = None


@dataclass(frozen=True)
class SetPlan:
    """Rows of the input making up each set, and the basal row of each of those cells."""

    rows: list[np.ndarray]  # per set: [n_i] target rows (cells whose prediction this set produces)
    basal_rows: list[np.ndarray]  # per set: [n_i] rows whose features are the model's input


# ctrl [B,S,D], pert_idx [B], batch_idx [B,S], mask [B,S], cell_type_idx [B] -> (latent [B,S,Do], genes or None)
Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def chunk_sizes(n: int, max_len: int) -> list[int]:
    """Split n cells into ceil(n / max_len) chunks whose sizes differ by at most one."""
    k = -(-n // max_len)
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


def plan_sets(
    pert: np.ndarray, cell_type: np.ndarray, is_control: np.ndarray, max_len: int, seed: int, basal: str = "sample"
) -> SetPlan:
    """Group rows by (cell type, perturbation) and choose basal rows; deterministic for the seed."""
    rng = np.random.default_rng(seed)
    cell_type, pert = np.asarray(cell_type).astype(str), np.asarray(pert).astype(str)
    ct_names, ct_codes = np.unique(cell_type, return_inverse=True)
    _, pert_codes = np.unique(pert, return_inverse=True)
    groups, inverse = np.unique(np.stack([ct_codes, pert_codes], axis=1), axis=0, return_inverse=True)
    rows_out: list[np.ndarray] = []
    basal_out: list[np.ndarray] = []
    for g, (ct_code, _) in enumerate(groups):
        ct = ct_names[ct_code]
        rows = np.flatnonzero(inverse.ravel() == g)
        if basal == "self":
            basal_rows = rows
        else:
            pool = np.flatnonzero(is_control & (cell_type == ct))
            if pool.size == 0:
                raise DataError(
                    f"cell type {str(ct)!r} has no control cells in the input, so no basal cells can be sampled "
                    f"(fix: include its control cells, or pass --basal self to use each cell as its own basal)"
                )
            basal_rows = rng.choice(pool, size=rows.size, replace=rows.size > pool.size)
        start = 0
        for size in chunk_sizes(rows.size, max_len):
            rows_out.append(rows[start : start + size])
            basal_out.append(basal_rows[start : start + size])
            start += size
    return SetPlan(rows=rows_out, basal_rows=basal_out)


def run_plan(
    plan: SetPlan,
    features: np.ndarray,
    pert_idx: np.ndarray,
    batch_idx: np.ndarray,
    cell_type_idx: np.ndarray,
    predictor: Predictor,
    batch_size: int,
    max_len: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run every set of the plan through `predictor`; returns per-row latent (and gene) predictions."""
    n_rows = features.shape[0]
    latent_out: np.ndarray | None = None
    genes_out: np.ndarray | None = None
    for start in range(0, len(plan.rows), batch_size):
        sets = range(start, min(start + batch_size, len(plan.rows)))
        b = len(sets)
        s = max(plan.rows[i].size for i in sets)
        ctrl = np.zeros((b, s, features.shape[1]), dtype=np.float32)  # [B, S, D]
        mask = np.zeros((b, s), dtype=bool)  # [B, S]
        batches = np.zeros((b, s), dtype=np.int64)  # [B, S]
        perts = np.empty(b, dtype=np.int64)  # [B]
        cts = np.empty(b, dtype=np.int64)  # [B]
        for j, i in enumerate(sets):
            n = plan.rows[i].size
            ctrl[j, :n] = features[plan.basal_rows[i]]
            mask[j, :n] = True
            batches[j, :n] = batch_idx[plan.basal_rows[i]]
            perts[j] = pert_idx[plan.rows[i][0]]
            cts[j] = cell_type_idx[plan.rows[i][0]]
        latent, genes = predictor(ctrl, perts, batches, mask, cts)
        if latent_out is None:
            latent_out = np.zeros((n_rows, latent.shape[-1]), dtype=np.float32)
            if genes is not None:
                genes_out = np.zeros((n_rows, genes.shape[-1]), dtype=np.float32)
        for j, i in enumerate(sets):
            n = plan.rows[i].size
            latent_out[plan.rows[i]] = latent[j, :n]
            if genes_out is not None and genes is not None:
                genes_out[plan.rows[i]] = genes[j, :n]
    assert latent_out is not None
    return latent_out, genes_out


def torch_predictor(model: torch.nn.Module, device: str | torch.device = "cpu") -> Predictor:
    """Run the model in process (eval mode, no grad)."""

    @torch.no_grad()
    def predict(ctrl, pert_idx, batch_idx, mask, cell_type_idx):
        t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        out = model(t(ctrl), t(pert_idx), t(batch_idx), t(mask), t(cell_type_idx))
        genes = None if out.genes is None else out.genes.float().cpu().numpy()
        return out.latent.float().cpu().numpy(), genes

    return predict


def _features(adata: ad.AnnData, embed_key: str | None, path: str) -> np.ndarray:
    if embed_key in (None, "X"):
        x = adata.X
    else:
        if embed_key not in adata.obsm:
            raise DataError(
                f"{path}: obsm[{embed_key!r}] is missing (have {sorted(adata.obsm.keys())}); "
                f"run `state tx preprocess_train` or pass --embed_key"
            )
        x = adata.obsm[embed_key]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: {embed_key or 'X'} holds {x.dtype} values, not numbers")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        where = "X" if embed_key in (None, "X") else f"obsm[{embed_key!r}]"
        raise DataError(
            f"{path}: {where} has {int(bad.sum())} NaN/Inf values in {int(bad.any(axis=1).sum())} of "
            f"{x.shape[0]} cells; predictions for them would be NaN (fix: drop or repair those cells)"
        )
    return x


def _labels(adata: ad.AnnData, column: str, path: str, what: str) -> np.ndarray:
    if column not in adata.obs:
        raise DataError(
            f"{path}: obs column {column!r} ({what}) is missing; columns are {list(adata.obs.columns)} "
            f"(fix: pass the right --{what.replace(' ', '_')} flag)"
        )
    values = adata.obs[column]
    if values.isna().any():
        raise DataError(
            f"{path}: obs column {column!r} ({what}) has {int(values.isna().sum())} missing values "
            f"(fix: fill them or drop those cells)"
        )
    return values.astype(str).to_numpy()


def infer_adata(
    adata: ad.AnnData, run, options: InferOptions, predictor: Predictor, source: str = "input"
) -> ad.AnnData:
    """Add predictions of a loaded run (`state_core.runs.load.LoadedRun`) to `adata`."""
    vocab, cfg = run.vocab, run.config.data.kwargs
    pert_col = options.pert_col or cfg.pert_col
    ct_col = options.celltype_col or cfg.cell_type_key
    batch_col = options.batch_col or cfg.batch_col
    control = options.control_pert or vocab.control_pert
    embed_key = options.embed_key if options.embed_key is not None else cfg.embed_key
    # every cell needs its cell type: without it basal cells would be drawn across all cell types
    cell_types = _labels(adata, ct_col, source, "celltype col")
    if options.celltypes:
        keep = np.isin(cell_types, options.celltypes)
        if not keep.any():
            raise DataError(
                f"{source}: none of the cell types {options.celltypes} found in obs[{ct_col!r}] "
                f"(it has {sorted(set(cell_types))[:20]})"
            )
        adata = adata[keep].copy()
        cell_types = cell_types[keep]
    features = _features(adata, embed_key, source)
    expected = run.model_config.input_dim
    if features.shape[1] != expected:
        raise DataError(
            f"{source}: {embed_key or 'X'} has {features.shape[1]} features but the model expects {expected} "
            f"(fix: use the same preprocessing as training, e.g. the HVGs in the run's vocab.json)"
        )
    perts = _labels(adata, pert_col, source, "pert col")
    pert_idx = vocab.index("perturbation", perts, where=source)
    ct_lookup = {name: i for i, name in enumerate(vocab.cell_types)}
    cell_type_idx = np.array([ct_lookup.get(c, -1) for c in cell_types], dtype=np.int64)
    if run.model_kind == "context_mean" and (cell_type_idx < 0).any():
        unknown = sorted(set(cell_types[cell_type_idx < 0]))
        raise UnknownLabelError("cell type", unknown, list(vocab.cell_types), where=source)
    uses_batches = bool(run.model_config.n_batches)
    if uses_batches and batch_col:
        batch_idx = vocab.index("batch", _labels(adata, batch_col, source, "batch col"), where=source)
    else:
        batch_idx = np.zeros(adata.n_obs, dtype=np.int64)
    max_len = run.model_config.cell_set_len  # the length the run was built with
    if options.basal == "sample" and not (perts == control).any():
        raise DataError(
            f"{source}: no cell has the control label {control!r} in obs[{pert_col!r}], so no basal cells "
            f"can be sampled (fix: pass --control_pert, include control cells, or use --basal self)"
        )
    plan = plan_sets(perts, cell_types, perts == control, max_len, options.seed, options.basal)
    latent, genes = run_plan(
        plan, features, pert_idx, batch_idx, np.maximum(cell_type_idx, 0), predictor, options.batch_size, max_len
    )
    key = options.pred_key or f"{embed_key or 'X'}_pred"
    adata.obsm[key] = latent
    if genes is not None:
        adata.obsm[f"{key}_genes"] = genes
    # `state eval run` reads this to score obsm[pred_key] against obsm[embed_key] (state_core.eval.sources)
    adata.uns["state_infer"] = {
        "run": str(run.run_dir),
        "pred_key": key,
        "embed_key": embed_key or "X",
        "basal": options.basal,
        "seed": options.seed,
        "n_sets": len(plan.rows),
        "gene_names": list(vocab.gene_names),
        "feature_names": list(vocab.feature_names),
    }
    return adata


EVAL_PRED, EVAL_REAL = "adata_pred.h5ad", "adata_real.h5ad"  # the names `tx predict` uses too


def write_eval_pair(adata: ad.AnnData, folder: Path, columns: list[str]) -> tuple[Path, Path]:
    """An evaluation-ready pair from `infer_adata`'s output: `X` = predictions and `X` = the input features
    they are to be compared with (the model's feature space, named by the run's feature names), same obs.

    Meant for inputs whose labels are the real perturbations of real cells (held-out data): each predicted
    cell is then scored against the real cell it stands for.
    """
    meta = adata.uns["state_infer"]
    embed_key, pred_key = str(meta["embed_key"]), str(meta["pred_key"])
    real = adata.X if embed_key == "X" else adata.obsm[embed_key]
    real = real.toarray() if sp.issparse(real) else np.asarray(real)
    obs = adata.obs[[c for c in dict.fromkeys(columns) if c in adata.obs]].copy()
    names = [str(n) for n in meta["feature_names"]]
    if len(names) != real.shape[1]:
        names = [f"feature_{i}" for i in range(real.shape[1])]
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / EVAL_PRED, folder / EVAL_REAL
    for path, x in zip(paths, (adata.obsm[pred_key], real), strict=True):
        part = ad.AnnData(X=np.asarray(x, dtype=np.float32), obs=obs.copy())
        part.var_names = names
        write_h5ad_atomic(part, path)
    return paths


def check_options(options: InferOptions) -> None:
    problems = []
    if options.batch_size < 1:
        problems.append(Problem("--batch_size", f"{options.batch_size} is not positive", "use e.g. --batch_size 16"))
    if options.basal not in ("sample", "self"):
        problems.append(Problem("--basal", f"{options.basal!r} is unknown", "use sample or self"))
    if problems:
        raise ConfigError("state tx infer", problems)


def check_output_file(out: Path, flag: str) -> None:
    """The output must be a file in a writable folder: checked before any work is done."""
    if out.is_dir():
        raise ConfigError("state tx infer", Problem(flag, f"{out} is a folder", "give a file path ending in .h5ad"))
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError("state tx infer", Problem(flag, f"folder {parent} does not exist", "create it first"))
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError("state tx infer", Problem(flag, f"{out} is not writable", "choose a folder you can write to"))


def infer_file(
    model_dir: str | Path,
    adata_path: str | Path,
    output: str | Path | None,
    *,
    checkpoint: str = "final",
    options: InferOptions = InferOptions(),
    triton_url: str | None = None,
    model_name: str = "state_st",
    eval_pair: str | Path | None = None,
) -> Path:
    """Read `adata_path`, predict with the run in `model_dir` (locally or via Triton), write `output`; with
    `eval_pair`, also `<eval_pair>/adata_{pred,real}.h5ad` for `state eval run` (`write_eval_pair`)."""
    from state_core.runs.load import load_run

    adata_path = Path(adata_path)
    check_options(options)
    out = Path(output) if output else adata_path.with_name(adata_path.stem + "_simulated.h5ad")
    check_output_file(out, "--output")
    if eval_pair is not None and Path(eval_pair).is_file():
        raise ConfigError(
            "state tx infer",
            Problem("--eval_pair", f"{eval_pair} is a file", "give a folder (it is created if missing)"),
        )
    adata = read_h5ad_file(adata_path)
    run = load_run(model_dir, checkpoint=checkpoint)
    if triton_url:
        from state_core.serve.client import triton_predictor

        predictor = triton_predictor(triton_url, model_name=model_name)
    else:
        predictor = torch_predictor(run.model)
    adata = infer_adata(adata, run, options, predictor, source=str(adata_path))
    write_h5ad_atomic(adata, out)
    log.info("wrote %s (%d cells)", out, adata.n_obs)
    if eval_pair is not None:
        cfg = run.config.data.kwargs
        columns = [options.pert_col or cfg.pert_col, options.celltype_col or cfg.cell_type_key]
        write_eval_pair(adata, Path(eval_pair), columns)
    return out
