"""Benchmark `state eval run` against cell-eval on the same synthetic files, and compare every value.

Pairs as in the cell-eval trial: 2,000 genes, 1 control + N perturbations x 100 cells (N = 20 and 100).
cell-eval is installed from PyPI into its own venv under --cache-dir (not committed); without network
the comparison is skipped and only our timings are printed. Timings are wall and CPU (user + sys)
seconds of each CLI process (imports included) in the same run; the machine may be shared, so read
ratios, not seconds.

    python bench/eval.py [--n-perts 20 100] [--profile full] [--cache-dir DIR] [--skip-cell-eval]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from state_core.eval.synthetic_pairs import PairSpec, write_pair

COUNT_COLUMNS = {"de_nsig_counts_real", "de_nsig_counts_pred"}
EXACT_PREFIXES = ("overlap_at_", "precision_at_")


def cell_eval_bin(cache: Path) -> Path | None:
    venv = cache / "cell-eval-venv"
    exe = venv / "bin" / "cell-eval"
    if exe.exists():
        return exe
    print(f"installing cell-eval into {venv} ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "cell-eval"], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as err:
        print(f"cell-eval unavailable ({err}); comparison skipped")
        return None
    return exe if exe.exists() else None


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def max_differences(ours: Path, theirs: Path, name: str) -> pd.DataFrame:
    """Largest |ours - theirs| per column; counts and overlaps must be equal per perturbation."""
    a, b = pd.read_csv(ours / name), pd.read_csv(theirs / name)
    if list(a.columns) != list(b.columns):
        print(f"  {name}: column mismatch\n    ours   {list(a.columns)}\n    theirs {list(b.columns)}")
    rows = []
    for col in [c for c in a.columns[1:] if c in b.columns]:
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        same_nan = np.isnan(x) & np.isnan(y)
        diff = np.where(same_nan, 0.0, np.abs(x - y))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        # per-perturbation counts/overlaps are exact; their means in agg_results may differ by 1 ulp
        exact = name == "results.csv" and (col in COUNT_COLUMNS or col.startswith(EXACT_PREFIXES))
        rows.append({"column": col, "max_abs_diff": float(diff.max()), "rule": "exact" if exact else "<=1e-6"})
    table = pd.DataFrame(rows)
    table["ok"] = np.where(table["rule"] == "exact", table["max_abs_diff"] == 0, table["max_abs_diff"] <= 1e-6)
    return table


def bench_one(n_perts: int, profile: str, cache: Path, cell_eval: Path | None) -> None:
    spec = PairSpec(n_genes=2000, n_perts=n_perts, cells_per_group=100, seed=0)
    work = cache / f"p{n_perts}"
    work.mkdir(parents=True, exist_ok=True)
    real, pred = work / "real.h5ad", work / "pred.h5ad"
    if not real.exists():
        write_pair(spec, str(real), str(pred))
    common = ["--pert-col", spec.pert_col, "--control-pert", spec.control_pert, "--profile", profile]
    ours_dir, theirs_dir = work / f"ours_{profile}", work / f"cell_eval_{profile}"
    state = str(Path(sys.executable).with_name("state"))
    t_ours, cpu_ours = timed(
        [
            state,
            "eval",
            "run",
            "-ap",
            str(pred),
            "-ar",
            str(real),
            "-o",
            str(ours_dir),
            "--no-report",
            "-t",
            "1",
            *common,
        ]
    )
    print(f"\n== {n_perts} perturbations x 100 cells, 2000 genes, profile {profile}")
    print(f"state eval run : {t_ours:7.2f} s wall, {cpu_ours:7.2f} s CPU")
    if cell_eval is None:
        print("cell-eval      : skipped (reference on this machine class: full 38.9 s, minimal 18 s for 20 perts)")
        return
    t_theirs, cpu_theirs = timed(
        [
            str(cell_eval),
            "run",
            "-ap",
            str(pred),
            "-ar",
            str(real),
            "-o",
            str(theirs_dir),
            "--num-threads",
            "2",
            *common,
        ]
    )
    print(f"cell-eval run  : {t_theirs:7.2f} s wall, {cpu_theirs:7.2f} s CPU")
    print(f"speed-up       : x{t_theirs / t_ours:.1f} wall, x{cpu_theirs / cpu_ours:.1f} CPU")
    for name in ("results.csv", "agg_results.csv"):
        table = max_differences(ours_dir, theirs_dir, name)
        bad = table[~table["ok"]]
        print(f"  {name}: {len(table)} columns, worst diff {table['max_abs_diff'].max():.3g}, failing {len(bad)}")
        if name == "results.csv":
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        if len(bad):
            print(bad.to_string(index=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-perts", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--profile", default="full")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "state-bench-eval")
    parser.add_argument("--skip-cell-eval", action="store_true")
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cell_eval = None if args.skip_cell_eval else cell_eval_bin(args.cache_dir)
    for n in args.n_perts:
        bench_one(n, args.profile, args.cache_dir, cell_eval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
