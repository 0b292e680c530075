"""Warm in-process timing of one evaluator, run by `bench/eval.py` inside that evaluator's own interpreter.

`--side ours` calls `state_core.eval.evaluate`, `--side cell-eval` calls `cell_eval.MetricsEvaluator`; both
read the same files once, run one untimed call (imports, numba's compile and caches are paid there), then
time `--repeats` full calls (DE tables + every metric of the profile + CSVs written). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["ours", "cell-eval"], required=True)
    parser.add_argument("--real", required=True)
    parser.add_argument("--pred", required=True)
    parser.add_argument("--pert-col", required=True)
    parser.add_argument("--control-pert", required=True)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import anndata as ad

    real, pred = ad.read_h5ad(args.real), ad.read_h5ad(args.pred)
    if args.side == "ours":
        from state_core.eval import evaluate

        def run(outdir: str, pred: ad.AnnData, real: ad.AnnData) -> None:
            evaluate(pred, real, pert_col=args.pert_col, control_pert=args.control_pert, profile=args.profile,
                     outdir=outdir, num_threads=args.threads)  # fmt: skip
    else:
        from cell_eval import MetricsEvaluator

        def run(outdir: str, pred: ad.AnnData, real: ad.AnnData) -> None:
            evaluator = MetricsEvaluator(
                pred, real, control_pert=args.control_pert, pert_col=args.pert_col, num_threads=args.threads,
                outdir=outdir,
            )  # fmt: skip
            evaluator.compute(profile=args.profile)

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats + 1):
            inputs = pred.copy(), real.copy()  # an evaluator may modify its inputs; copying is not timed
            start = time.perf_counter()
            run(f"{tmp}/r{i}", *inputs)
            times.append(time.perf_counter() - start)
    first, times = times[0], times[1:]
    print(json.dumps({"first": first, "warm": times}))


if __name__ == "__main__":
    main()
