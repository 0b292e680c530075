"""ST prediction quality against the baselines, on synthetic experiments generated for this run.

For each dataset (structurally different: strong vs weak effects, more or less cell-type-specific programmes)
and each split (fewshot: perturbations held out in one cell type; zeroshot: a whole cell type held out), it
trains ST with the README recipe (`model=state_sm model.kwargs.hidden_dim=336 model.kwargs.cell_set_len=64
training.batch_size=8 training.lr=1e-4`, everything else at its default) and fits every baseline, all through
the `state` commands a user runs. Each model is scored twice:
  - test: `state tx predict` on the TOML test split;
  - fresh: new cells of the held-out groups, drawn from the same ground truth (`SynthSpec.cell_seed`), through
    `state tx infer` (basal cells = controls of the same cell type) and then `state eval run`; at two sizes:
    "fresh x1" has as many cells per group as the training data (~170), "fresh x4" four times as many, so the
    real means that pearson_delta compares against are less noisy (the metric and the models are the same).
A reference row, "real cells, 2nd draw", scores a second sample of the real held-out cells (same ground truth,
same size) as if it were a prediction: what a perfect model of the cells scores, given finite cells on both sides.
It prints one table per dataset and split, and a verdict: ST against the best baseline on each headline metric
on the fresh cells, and the spread ratio (predicted / real within-group variance, median over perturbations).

    python bench/quality.py                     # both datasets, both splits (~40-75 min on 2 cores)
    python bench/quality.py --datasets strong --splits fewshot --st-steps 300   # a quicker look
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from state_core.atomic import write_h5ad_atomic
from state_core.data.preprocess import preprocess_train_adata
from state_core.data.synth import SynthSpec, make_synthetic_adata, write_synthetic_experiment

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "quality"
STATE = [sys.executable, "-m", "state_core.cli.main"]
CONTROL = "non-targeting"
N_GENES = 2000

# Structurally different experiments (16-18k cells x 2000 genes, 3-4 cell types, 24-30 perturbations, 2 batches,
# co-regulated programmes, cell-type response strength and cell-type-specific programme gains).
DATASETS: dict[str, SynthSpec] = {
    "strong": SynthSpec(
        n_cells=16000,
        n_genes=N_GENES,
        n_cell_types=3,
        n_perturbations=30,
        n_batches=2,
        seed=1,
        n_programmes=8,
        programme_effect=1.0,
        programme_gain_sd=0.6,
    ),
    "weak": SynthSpec(
        n_cells=16000,
        n_genes=N_GENES,
        n_cell_types=3,
        n_perturbations=30,
        n_batches=2,
        seed=2,
        n_programmes=12,
        programme_fraction=0.04,
        programme_effect=0.4,
        programme_gain_sd=0.8,
        response_strength=(0.3, 1.7),
        knockdown_residual=(0.2, 0.6),
        mean_dispersion=2.0,
    ),
    # Added after mean_change_cap was chosen on the two above: its out-of-sample check. 4 cell types, 24
    # perturbations, moderate effects, more uneven group sizes.
    "moderate": SynthSpec(
        n_cells=18000,
        n_genes=N_GENES,
        n_cell_types=4,
        n_perturbations=24,
        n_batches=2,
        seed=3,
        n_programmes=6,
        programme_fraction=0.05,
        programme_effect=0.7,
        programme_gain_sd=0.4,
        group_size_sd=1.2,
        mean_dispersion=2.5,
    ),
}
README_ST = [
    "model=state_sm",
    "model.kwargs.hidden_dim=336",
    "model.kwargs.cell_set_len=64",
    "training.batch_size=8",
    "training.lr=1e-4",
]
BASELINES = ("perturb_mean", "perturb_mean_celltype", "context_mean")
REDRAW = "real cells, 2nd draw"  # a reference, not a baseline: never in the verdict
HEADLINE = ("pearson_delta", "de_direction_match", "de_sig_genes_recall", "overlap_at_N")
COLUMNS = (
    "pearson_delta",
    "mse_delta",
    "de_direction_match",
    "de_sig_genes_recall",
    "overlap_at_N",
    "discrimination_score_l1",
    "spread",
)


@dataclass(frozen=True)
class Scored:
    model: str
    test: dict[str, float]
    fresh: dict[int, dict[str, float]]  # scale -> metrics on the fresh cells of that scale
    train_cpu_s: float


def run(cmd: list[str], log: Path) -> float:
    """Run a `state` command; returns the CPU-seconds it used (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}); see {log}:\n  {' '.join(cmd)}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(name: str, spec: SynthSpec, scales: tuple[int, ...]) -> Path:
    """The experiment folder (training data + TOMLs) and fresh cells of each held-out split, at each scale:
    `scale` times as many cells per group as the training data has (more cells, less noisy reference means)."""
    out = CACHE / name
    missing = [k for k in scales if not (out / f"redraw_x{k}_zeroshot.h5ad").exists()]
    if not missing:
        return out
    exp = write_synthetic_experiment(out, spec, num_hvgs=N_GENES, embed_key=None)
    # cell_seed 1: the fresh cells every model is scored on; cell_seed 2: a second draw of the same groups,
    # scored as if it were a prediction (the "real cells, 2nd draw" reference row)
    for scale, (prefix, cell_seed) in ((k, d) for k in missing for d in (("fresh", 1), ("redraw", 2))):
        drawn = replace(spec, cell_seed=cell_seed, n_cells=spec.n_cells * scale)
        cells = preprocess_train_adata(make_synthetic_adata(drawn), num_hvgs=N_GENES)
        pert, ct = cells.obs[spec.pert_col].astype(str), cells.obs[spec.cell_type_key].astype(str)
        held_out = {
            "fewshot": (ct == exp.fewshot_cell_type) & pert.isin([CONTROL, *exp.fewshot_test_perts]),
            "zeroshot": ct == exp.zeroshot_test_cell_type,
        }
        for split, keep in held_out.items():
            write_h5ad_atomic(cells[keep.to_numpy()].copy(), out / f"{prefix}_x{scale}_{split}.h5ad")
    return out


def spread_ratio(pred: np.ndarray, real: np.ndarray, labels: np.ndarray) -> float:
    """Median over perturbations of total within-group variance, predicted / real."""
    return spread_ratio_unpaired(pred, labels, real, labels)


def spread_ratio_unpaired(
    pred: np.ndarray, pred_labels: np.ndarray, real: np.ndarray, real_labels: np.ndarray
) -> float:
    """As spread_ratio, for predicted and real cells that are not the same rows."""
    ratios = [
        pred[pred_labels == p].var(0).sum() / max(real[real_labels == p].var(0).sum(), 1e-12)
        for p in np.unique(real_labels)
        if p != CONTROL and (real_labels == p).sum() > 1 and (pred_labels == p).sum() > 1
    ]
    return float(np.median(ratios))


def agg_means(path: Path) -> dict[str, float]:
    agg = pd.read_csv(path).set_index("statistic")
    return {k: float(v) for k, v in agg.loc["mean"].items()}


def score_test(run_dir: Path, log: Path) -> dict[str, float]:
    run(STATE + ["tx", "predict", "--output_dir", str(run_dir), "--checkpoint", "final", "--profile", "full"], log)
    eval_dir = run_dir / "eval_final"
    summary = json.loads((eval_dir / "metrics.json").read_text())["mean"]
    pred, real = ad.read_h5ad(eval_dir / "adata_pred.h5ad"), ad.read_h5ad(eval_dir / "adata_real.h5ad")
    summary["spread"] = spread_ratio(np.asarray(pred.X), np.asarray(real.X), real.obs["gene"].astype(str).to_numpy())
    return summary


def score_fresh(run_dir: Path, fresh: Path, work: Path, log: Path) -> dict[str, float]:
    """`tx infer` on fresh held-out cells, then `eval run` of the predictions against those same cells."""
    inferred = work / "fresh_inferred.h5ad"
    run(
        STATE
        + [
            "tx",
            "infer",
            "--model_dir",
            str(run_dir),
            "--adata",
            str(fresh),
            "--output",
            str(inferred),
            "--pert_col",
            "gene",
            "--embed_key",
            "X_hvg",
        ],
        log,
    )
    out = ad.read_h5ad(inferred)
    return score_pair(out, "X_hvg_pred", out, work, log)


def score_redraw(data: Path, split: str, scales: tuple[int, ...], log: Path) -> Scored:
    """Reference row: a second draw of real held-out cells scored as a prediction of the fresh cells. It is what
    a perfect model of the cells would score with that many cells (finite-sample noise in both)."""
    scores = {}
    for scale in scales:
        work = data / f"redraw_x{scale}_{split}"
        work.mkdir(exist_ok=True)
        redraw = ad.read_h5ad(data / f"redraw_x{scale}_{split}.h5ad")
        fresh = ad.read_h5ad(data / f"fresh_x{scale}_{split}.h5ad")
        scores[scale] = score_pair(redraw, "X_hvg", fresh, work, log)
    return Scored(REDRAW, {}, scores, 0.0)


def score_pair(
    cells_pred: ad.AnnData, pred_key: str, cells_real: ad.AnnData, work: Path, log: Path
) -> dict[str, float]:
    """Score obsm[pred_key] of `cells_pred` against obsm["X_hvg"] of `cells_real` (as X of a written pair of h5ad
    files) with `state eval run`; adds the spread ratio."""
    pred = ad.AnnData(X=np.asarray(cells_pred.obsm[pred_key], dtype=np.float32), obs=cells_pred.obs[["gene"]].copy())
    real = ad.AnnData(X=np.asarray(cells_real.obsm["X_hvg"], dtype=np.float32), obs=cells_real.obs[["gene"]].copy())
    pred.var_names = real.var_names = [f"g{i}" for i in range(real.n_vars)]
    pred.obs_names, real.obs_names = [f"p{i}" for i in range(pred.n_obs)], [f"r{i}" for i in range(real.n_obs)]
    write_h5ad_atomic(pred, work / "fresh_pred.h5ad")
    write_h5ad_atomic(real, work / "fresh_real.h5ad")
    run(
        STATE
        + [
            "eval",
            "run",
            "-ap",
            str(work / "fresh_pred.h5ad"),
            "-ar",
            str(work / "fresh_real.h5ad"),
            "--pert-col",
            "gene",
            "--control-pert",
            CONTROL,
            "--profile",
            "full",
            "-o",
            str(work / "fresh_eval"),
            "--no-report",
        ],
        log,
    )
    summary = agg_means(work / "fresh_eval" / "agg_results.csv")
    summary["spread"] = spread_ratio_unpaired(
        pred.X, pred.obs["gene"].astype(str).to_numpy(), real.X, real.obs["gene"].astype(str).to_numpy()
    )
    return summary


def library_fingerprint() -> str:
    """sha256 over state_core's Python sources: what a run's model and recipe were built from."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1] / "state_core"
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def train_and_score(
    data: Path, split: str, model: str, st_steps: int, extra: list[str], scales: tuple[int, ...], log: Path
) -> Scored:
    name = f"{split}_{model}"
    overrides = [
        f"data.kwargs.toml_config_path={data / f'{split}.toml'}",
        "data.kwargs.embed_key=X_hvg",
        "data.kwargs.output_space=gene",
        f"output_dir={data / 'runs'}",
        f"name={name}",
        "overwrite=true",
        "training.progress_bar=false",
    ]
    if model == "st":
        overrides += README_ST + [
            f"training.max_steps={st_steps}",
            f"training.val_freq={st_steps}",
            f"training.ckpt_every_n_steps={st_steps}",
            *extra,
        ]
    else:
        overrides += [f"model={model}", "training.max_steps=1"]
    run_dir = data / "runs" / name
    # a finished run of the same overrides and the same library code is reused (rerunning the bench): the
    # defaults behind the overrides live in the code, so a changed default must retrain
    done = run_dir / "bench_train.json"
    key = {"overrides": overrides, "code": library_fingerprint()}
    previous = json.loads(done.read_text()) if done.exists() else {}
    if {k: previous.get(k) for k in key} == key:
        cpu = previous["cpu_s"]
    else:
        cpu = run(STATE + ["tx", "train", *overrides], log)
        done.write_text(json.dumps({**key, "cpu_s": cpu}))
    fresh = {}
    for scale in scales:
        work = run_dir / f"bench_x{scale}"
        work.mkdir(exist_ok=True)
        fresh[scale] = score_fresh(run_dir, data / f"fresh_x{scale}_{split}.h5ad", work, log)
    return Scored(model, score_test(run_dir, log), fresh, cpu)


def cell(value: float | None, metric: str, model: str) -> str:
    if value is None or not np.isfinite(value):
        # context_mean predicts the same cells for every perturbation and for the controls: no delta exists
        return "n/a (no perturbation delta)" if model == "context_mean" and metric == "pearson_delta" else "n/a"
    return f"{value:.3f}"


def table(rows: list[Scored], scales: tuple[int, ...]) -> str:
    where = " / ".join(["test", *(f"fresh x{k}" for k in scales)])
    head = "| model | train CPU-s | " + " | ".join(f"{c} ({where})" for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = [
            " / ".join(cell(v, c, r.model) for v in [r.test.get(c), *(r.fresh[k].get(c) for k in scales)])
            for c in COLUMNS
        ]
        cpu = "-" if r.model == REDRAW else f"{r.train_cpu_s:.0f}"
        lines.append(f"| {r.model} | {cpu} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(rows: list[Scored], scale: int) -> list[str]:
    """ST against the best baseline on each headline metric, on the fresh cells of one scale."""
    st = next(r for r in rows if r.model == "st")
    redraw = next((r.fresh[scale] for r in rows if r.model == REDRAW), {})
    out = [f"fresh x{scale}:"]
    for metric in HEADLINE:
        base = [(r.fresh[scale].get(metric, np.nan), r.model) for r in rows if r.model not in ("st", REDRAW)]
        best, who = max((v, m) for v, m in base if np.isfinite(v))
        mine = st.fresh[scale].get(metric, np.nan)
        out.append(
            f"  {metric}: ST {mine:.3f} vs best baseline {best:.3f} ({who}) -> {'OK' if mine >= best else 'BELOW'}"
            f" (real cells, 2nd draw: {redraw.get(metric, np.nan):.3f})"
        )
    spread = st.fresh[scale].get("spread", np.nan)
    out.append(f"  spread (pred/real variance): {spread:.2f} -> {'OK' if 0.5 <= spread <= 2.0 else 'OUTSIDE 0.5-2'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--splits", nargs="+", default=["fewshot", "zeroshot"], choices=["fewshot", "zeroshot"])
    parser.add_argument(
        "--st-steps",
        type=int,
        default=1000,
        help="ST optimiser steps (0.35-0.5 CPU-s each on a bf16-capable CPU, 1.3-1.5 on an AVX2-only one)",
    )
    parser.add_argument("--st-extra", nargs="*", default=[], help="extra tx train overrides for ST")
    parser.add_argument(
        "--fresh-scales",
        nargs="+",
        type=int,
        default=[1, 4],
        help="fresh-cell sets to score on, each this many times the training data's cells per group",
    )
    args = parser.parse_args()
    scales = tuple(args.fresh_scales)
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; ST steps {args.st_steps}", flush=True)
    for name in args.datasets:
        t0 = time.time()
        data = prepare(name, DATASETS[name], scales)
        for split in args.splits:
            log = data / f"{split}.log"
            log.write_text("")
            models = ["st", *[b for b in BASELINES if b != "perturb_mean_celltype" or split == "fewshot"]]
            rows = [train_and_score(data, split, m, args.st_steps, args.st_extra, scales, log) for m in models]
            rows.append(score_redraw(data, split, scales, log))
            print(f"\n### {name} / {split} (log: {log})\n\n{table(rows, scales)}\n", flush=True)
            print("\n".join(line for k in scales for line in verdict(rows, k)), flush=True)
        print(f"({name}: {time.time() - t0:.0f} s wall)", flush=True)


if __name__ == "__main__":
    main()
