"""`state eval run|score|baseline|report`: cell-eval compatible evaluation (arguments follow cell-eval)."""

from __future__ import annotations

import argparse
from pathlib import Path

PROFILES = ["full", "minimal", "de", "anndata", "vcc", "pds"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pert-col", default="gene", help="obs column with perturbation labels [gene]")
    p.add_argument("--control-pert", default="non-targeting", help="control label [non-targeting]")
    p.add_argument("--allow-discrete", action="store_true", help="keep integer/normalised counts (no log1p)")
    p.add_argument(
        "-t", "--num-threads", type=int, default=1,
        help="threads [1]: BLAS threads, and with 2+ the predicted DE table on a second core; -1 = all",
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from state_core.cli.checks import require_label
    from state_core.eval.sources import MatrixKey, evaluate_files

    # NaN/Inf in X or the --embed-key matrix is refused by the evaluator on the data it has read (no second read)
    for path in (args.adata_pred, args.adata_real):
        require_label(path, args.pert_col, args.control_pert, "--control-pert")
    result, keys = evaluate_files(
        args.adata_pred,
        args.adata_real,
        pred_key=args.pred_key,
        real_key=args.real_key,
        report=args.report,
        pert_col=args.pert_col,
        control_pert=args.control_pert,
        profile=args.profile,
        outdir=args.outdir,
        embed_key=args.embed_key,
        skip_metrics=tuple(s for s in (args.skip_metrics or "").split(",") if s),
        celltype_col=args.celltype_col,
        num_threads=args.num_threads,
        de_pred=args.de_pred,
        de_real=args.de_real,
        allow_discrete=args.allow_discrete,
        epsilon=args.epsilon,
        cpm_filter=args.cpm_filter,
    )
    if keys.pred != MatrixKey("X"):
        print(f"scored pred {keys.pred} against real {keys.real} ({keys.origin})")
    means = result.agg[result.agg["statistic"] == "mean"].drop(columns="statistic")
    means = means.set_index("celltype").T if "celltype" in means else means.T.set_axis(["mean"], axis=1)
    print(means.to_string())
    return 0


def _score(args: argparse.Namespace) -> int:
    from state_core.cli.checks import require_text_file
    from state_core.eval import score

    require_text_file(args.user_input, "--user-input")
    require_text_file(args.base_input, "--base-input")
    table = score(args.user_input, args.base_input)
    from state_core.atomic import atomic_path

    with atomic_path(Path(args.output)) as tmp:
        table.to_csv(tmp, index=False)
    print(table.to_string(index=False))
    return 0


def _baseline(args: argparse.Namespace) -> int:
    from state_core.cli.checks import require_finite, require_label
    from state_core.eval import build_baseline

    require_finite(args.adata)
    require_label(args.adata, args.pert_col, args.control_pert, "--control-pert")
    build_baseline(
        args.adata,
        pert_col=args.pert_col,
        control_pert=args.control_pert,
        counts=args.counts,
        counts_col=args.counts_col,
        output_path=args.output_path,
        output_de_path=None if args.skip_de else args.output_de_path,
        allow_discrete=args.allow_discrete,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from state_core.eval import write_report

    for kind, path in write_report(args.result_dir, args.html, args.md).items():
        print(f"{kind}: {path}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_cmd", metavar="{run,score,baseline,report}")
    parser.set_defaults(func=lambda args: parser.print_help())

    run = sub.add_parser("run", help="evaluate predictions against real data")
    run.add_argument("-ap", "--adata-pred", required=True, help="predicted .h5ad")
    run.add_argument("-ar", "--adata-real", required=True, help="real .h5ad")
    run.add_argument(
        "--pred-key",
        help="where pred holds the predictions: X, obsm:KEY or layer:KEY "
        "[from `tx infer` metadata when present, else X]",
    )
    run.add_argument(
        "--real-key",
        help="matrix of the real file to score against [obsm:<embed_key> for an obsm prediction of `tx infer`, else X]",
    )
    run.add_argument("-dp", "--de-pred", help="precomputed predicted DE CSV")
    run.add_argument("-dr", "--de-real", help="precomputed real DE CSV")
    run.add_argument("-o", "--outdir", default="./cell-eval-outdir")
    run.add_argument("--profile", choices=PROFILES, default="full")
    run.add_argument("--skip-metrics", help="comma-separated metric names to leave out")
    run.add_argument("--embed-key", help="obsm key for discrimination l2/cosine")
    run.add_argument("--celltype-col", help="evaluate each cell type separately (files prefixed <celltype>_)")
    run.add_argument("--epsilon", type=float, default=0.0, help="pseudocount for fold changes [0]")
    run.add_argument("--cpm-filter", type=float, help="drop genes with pooled CPM <= T in both groups")
    run.add_argument("--no-report", dest="report", action="store_false", help="skip report.html/report.md")
    _common(run)
    run.set_defaults(func=_run)

    sc = sub.add_parser("score", help="normalise agg_results against a baseline's agg_results")
    sc.add_argument("-i", "--user-input", required=True, help="agg_results.csv of the model")
    sc.add_argument("-I", "--base-input", required=True, help="agg_results.csv of the baseline")
    sc.add_argument("-o", "--output", default="./baseline_diff.csv")
    sc.set_defaults(func=_score)

    base = sub.add_parser("baseline", help="build the mean baseline (and its DE table) from training data")
    base.add_argument("-a", "--adata", required=True)
    base.add_argument("-c", "--counts", help="CSV of cells per perturbation (pert column + --counts-col)")
    base.add_argument("--counts-col", default="n_cells")
    base.add_argument("-o", "--output-path", default="./baseline.h5ad")
    base.add_argument("-O", "--output-de-path", default="./baseline_de.csv")
    base.add_argument("--skip-de", action="store_true")
    _common(base)
    base.set_defaults(func=_baseline)

    rep = sub.add_parser("report", help="write report.html and report.md for an evaluation outdir")
    rep.add_argument("result_dir")
    rep.add_argument("--html", help="HTML path [<result_dir>/report.html]")
    rep.add_argument("--md", help="Markdown path [<result_dir>/report.md]")
    rep.set_defaults(func=_report)
