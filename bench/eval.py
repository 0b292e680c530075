"""Benchmark `state eval run` against cell-eval on the same generated files, and compare every value.

Three pair sets of different size and sparsity (`PairSpec`: 2,000 genes; the sparse ones have constant
genes and perturbations without DE genes). For each, in the same run and at the same thread count:

* cold: each CLI as a user runs it (a fresh process: imports, numba compile), repeats interleaved, the
  order alternating;
* warm: each evaluator called in-process after one untimed call (`bench/eval_warm.py`), repeats;
* parity: results.csv, agg_results.csv and both DE tables (real_de.csv, pred_de.csv), column by column,
  each with its own tolerance (`TOLERANCES`, with the reason).

cell-eval is installed into bench/.cache/cell-eval (not committed); without it only our timings print.
Figures are median [min-max] over the repeats with the load average; the machine may be shared, so read
the ratios, which are measured side by side.

    python bench/eval.py [--cases dense-50 sparse-100 mid-75] [--threads 2] [--repeats 3] [--skip-cell-eval]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchlib import CACHE, fmt_spread, load_average, peer_venv
from state_core.eval.synthetic_pairs import PairSpec, write_pair

CASES = {
    "dense-50": PairSpec(n_perts=50, cells_per_group=100, seed=1),
    "sparse-100": PairSpec(
        n_perts=100, cells_per_group=100, mean_scale=0.1, n_constant_genes=100, n_null_perts=10, seed=2
    ),  # fmt: skip
    "mid-75": PairSpec(
        n_perts=75, cells_per_group=150, mean_scale=0.3, n_constant_genes=40, n_null_perts=5, seed=3
    ),  # fmt: skip
}

# column -> (kind, tolerance, why). "exact": equal values; "abs": |a - b| <= tol; "rel": <= tol * max(1, |b|).
EXACT = ("exact", 0.0, "integers or ratios of integers from identical calls")
TOLERANCES: dict[str, tuple[str, float, str]] = {
    "de_nsig_counts_real": EXACT,
    "de_nsig_counts_pred": EXACT,
    "target_membership": EXACT,
    "ref_membership": EXACT,
    "statistic": EXACT,
    "p_value": ("rel", 1e-12, "float64 from the same U statistic and tie correction on both sides"),
    "fdr": ("rel", 1e-12, "Benjamini-Hochberg over the same float64 p-values"),
    "target_mean": ("rel", 1e-5, "float32 sums of 100-150 cells, accumulated in a different order"),
    "ref_mean": ("rel", 1e-5, "float32 sums of 100-150 cells, accumulated in a different order"),
    "log2_fold_change": ("rel", 1e-5, "log2 of a ratio of float32 means; ours is stored as float32"),
    "percent_change": ("rel", 1e-5, "ratio of float32 means; ours is stored as float32"),
    "pearson_edistance": ("abs", 1e-5, "cell-eval's pairwise distances are float32, ours float64 (exact)"),
}
DEFAULT_TOLERANCE = ("abs", 1e-6, "float32 inputs, float64 arithmetic on both sides")


MEAN_OF_EXACT = ("abs", 1e-12, "mean over perturbations of exact values: summation order only")


def tolerance(column: str, table: str) -> tuple[str, float, str]:
    rule = EXACT if column.startswith(("overlap_at_", "precision_at_")) else TOLERANCES.get(column, DEFAULT_TOLERANCE)
    return MEAN_OF_EXACT if rule is EXACT and table == "agg_results.csv" else rule


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def compare_table(ours: Path, theirs: Path, name: str, keys: list[str]) -> pd.DataFrame:
    """One row per column: largest difference after joining on `keys`, its rule and whether it holds."""
    a, b = pd.read_csv(ours / name), pd.read_csv(theirs / name)
    if len(a) != len(b) or set(a.columns) != set(b.columns):
        raise RuntimeError(f"{name}: shapes differ, ours {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}")
    joined = a.merge(b, on=keys, suffixes=("_ours", "_theirs"), validate="one_to_one")
    if len(joined) != len(a):
        raise RuntimeError(f"{name}: only {len(joined)} of {len(a)} rows match on {keys}")
    rows = []
    for col in [c for c in a.columns if c not in keys]:
        x, y = joined[f"{col}_ours"].to_numpy(float), joined[f"{col}_theirs"].to_numpy(float)
        kind, tol, why = tolerance(col, name)
        scale = np.maximum(1.0, np.abs(y)) if kind == "rel" else 1.0
        same = (x == y) | (np.isnan(x) & np.isnan(y))  # equal infinities (a zero mean) count as equal
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(x - y) / scale)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        worst = float(diff.max()) if len(diff) else 0.0
        rows.append({"column": col, "worst": worst, "rule": f"{kind} {tol:g}", "ok": worst <= tol, "why": why})
    if "fdr" in a.columns:  # the significance calls themselves
        calls = int(((joined["fdr_ours"] < 0.05) != (joined["fdr_theirs"] < 0.05)).sum())
        rows.append({"column": "calls fdr<0.05", "worst": calls, "rule": "exact 0", "ok": calls == 0, "why": ""})
    return pd.DataFrame(rows)


def zero_fraction(path: Path) -> float:
    x = ad.read_h5ad(path).X
    return 1.0 - (x.nnz if sp.issparse(x) else np.count_nonzero(x)) / (x.shape[0] * x.shape[1])


def warm(python: Path, side: str, real: Path, pred: Path, spec: PairSpec, args: argparse.Namespace) -> dict:
    cmd = [str(python), str(Path(__file__).with_name("eval_warm.py")), "--side", side, "--real", str(real)]
    cmd += ["--pred", str(pred), "--pert-col", spec.pert_col, "--control-pert", spec.control_pert]
    cmd += ["--profile", args.profile, "--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"warm {side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_case(name: str, spec: PairSpec, cell_eval: Path | None, args: argparse.Namespace) -> dict:
    work = args.cache_dir / name
    work.mkdir(parents=True, exist_ok=True)
    real, pred = work / "real.h5ad", work / "pred.h5ad"
    if not real.exists():
        write_pair(spec, str(real), str(pred))
    n_genes = spec.n_genes
    print(f"\n== {name}: {spec.n_perts} perturbations ({spec.n_null_perts} without effect) x "
          f"{spec.cells_per_group} cells, {n_genes} genes ({spec.n_constant_genes} constant), "
          f"real X {zero_fraction(real):.0%} zeros; profile {args.profile}, {args.threads} threads, "
          f"{load_average()}", flush=True)  # fmt: skip
    common = ["-ap", str(pred), "-ar", str(real), "--pert-col", spec.pert_col, "--control-pert", spec.control_pert]
    common += ["--profile", args.profile]
    ours_cmd = [str(Path(sys.executable).with_name("state")), "eval", "run", *common, "--no-report"]
    ours_cmd += ["-t", str(args.threads), "-o", str(work / "ours")]
    sides = {"ours": ours_cmd}
    if cell_eval is not None:
        theirs_cmd = [str(cell_eval.with_name("cell-eval")), "run", *common, "--num-threads", str(args.threads)]
        sides["cell-eval"] = theirs_cmd + ["-o", str(work / "cell_eval")]
    cold: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    for r in range(args.repeats):
        for side in list(sides) if r % 2 == 0 else list(sides)[::-1]:
            cold[side].append(timed(sides[side]))
    hot = {"ours": warm(Path(sys.executable), "ours", real, pred, spec, args)}
    if cell_eval is not None:
        hot["cell-eval"] = warm(cell_eval, "cell-eval", real, pred, spec, args)
    for side in sides:
        walls, cpus = [w for w, _ in cold[side]], [c for _, c in cold[side]]
        first = hot[side]["first"]
        print(
            f"  {side:9s} cold wall {fmt_spread(walls, 2)} s, CPU {fmt_spread(cpus, 2)} s; "
            f"warm {fmt_spread(hot[side]['warm'], 3)} s (first in-process call {first:.2f} s)"
        )
    figures = {"case": name, "load": load_average()}
    if cell_eval is None:
        return figures
    med = {s: {k: float(np.median(v)) for k, v in zip(("wall", "cpu"), zip(*cold[s]), strict=True)} for s in sides}
    warm_med = {s: float(np.median(hot[s]["warm"])) for s in sides}
    figures |= {
        "cold_wall": med["cell-eval"]["wall"] / med["ours"]["wall"],
        "cold_cpu": med["cell-eval"]["cpu"] / med["ours"]["cpu"],
        "warm": warm_med["cell-eval"] / warm_med["ours"],
    }
    print(f"  speed-up  cold x{figures['cold_wall']:.1f} wall, x{figures['cold_cpu']:.1f} CPU; "
          f"warm x{figures['warm']:.1f}")  # fmt: skip
    failing = 0
    for table, keys in (("results.csv", ["perturbation"]), ("agg_results.csv", ["statistic"]),
                        ("real_de.csv", ["target", "feature"]), ("pred_de.csv", ["target", "feature"])):  # fmt: skip
        rows = compare_table(work / "ours", work / "cell_eval", table, keys)
        bad = rows[~rows["ok"]]
        failing += len(bad)
        worst = rows.sort_values("worst", ascending=False).head(3)
        shown = ", ".join(f"{r.column} {r.worst:.2g} ({r.rule})" for r in worst.itertuples())
        print(f"  {table:16s} {len(rows)} columns, {len(bad)} outside tolerance; largest: {shown}")
        if len(bad):
            print(bad.to_string(index=False))
    figures["parity_failures"] = failing
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--profile", default="full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=CACHE / "eval")
    parser.add_argument("--skip-cell-eval", action="store_true")
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cell_eval = None if args.skip_cell_eval else peer_venv("cell-eval", ["cell-eval==0.8.2"], torch_first=False)
    print("tolerances (column: rule, why):")
    for column, (kind, tol, why) in {**TOLERANCES, "overlap_at_* / precision_at_*": EXACT,
                                      "exact columns in agg_results.csv": MEAN_OF_EXACT,
                                      "every other column": DEFAULT_TOLERANCE}.items():  # fmt: skip
        print(f"  {column}: {kind} {tol:g} ({why})")
    results = [bench_case(name, CASES[name], cell_eval, args) for name in args.cases]
    if cell_eval is not None:
        print("\nsummary (cell-eval time / ours, medians):")
        for r in results:
            print(
                f"  {r['case']:11s} cold x{r['cold_wall']:.1f} wall / x{r['cold_cpu']:.1f} CPU, "
                f"warm x{r['warm']:.1f}, parity failures {r['parity_failures']}  ({r['load']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
