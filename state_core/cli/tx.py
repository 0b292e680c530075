"""`state tx` commands: train, predict, infer, preprocess_train, preprocess_infer.

Flags keep the original spelling (`--output_dir`, `--model_dir`, `--pert_col`, ...) and also accept dashes.
"""

from __future__ import annotations

import argparse


def _flag(parser: argparse.ArgumentParser, name: str, **kw) -> None:
    """Add `--a_b` with the alias `--a-b`."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, **kw)


def _train(args: argparse.Namespace) -> int:
    from state_core.config.train_config import describe, read_overrides

    if args.help:
        print(
            "usage: state tx train [key=value ...]\n\nKeys and defaults (override any with key=value;"
            " model=<state|state_sm|state_lg|pertsets|context_mean|perturb_mean|perturb_mean_celltype|embed_sum>):\n"
        )
        print(describe())
        return 0
    from state_core.train.fit import train_st

    cfg, problems = read_overrides(args.overrides)
    run_dir = train_st(cfg, problems)  # bad overrides are reported together with the config and data checks
    print(f"run folder: {run_dir}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from state_core.train.predict import predict_test_split

    out = predict_test_split(
        args.output_dir,
        checkpoint=args.checkpoint,
        profile=args.profile,
        evaluate=not args.predict_only,
        out_dir=args.eval_dir,
    )
    print(f"predictions and metrics: {out}")
    return 0


def _infer(args: argparse.Namespace) -> int:
    from state_core.train.infer import InferOptions, infer_file

    opts = InferOptions(
        pert_col=args.pert_col,
        embed_key=args.embed_key,
        celltype_col=args.celltype_col,
        batch_col=args.batch_col,
        control_pert=args.control_pert,
        seed=args.seed,
        basal=args.basal,
        pred_key=args.pred_key,
        batch_size=args.batch_size,
        celltypes=args.celltypes.split(",") if args.celltypes else None,
    )
    out = infer_file(
        args.model_dir,
        args.adata,
        args.output,
        checkpoint=args.checkpoint,
        options=opts,
        triton_url=args.triton,
        eval_pair=args.eval_pair,
    )
    print(f"predictions written to {out}")
    if args.eval_pair:
        print(
            f"evaluation pair in {args.eval_pair}: state eval run -ap {args.eval_pair}/adata_pred.h5ad "
            f"-ar {args.eval_pair}/adata_real.h5ad"
        )
    return 0


def _preprocess_train(args: argparse.Namespace) -> int:
    from state_core.cli.checks import require_finite
    from state_core.data.preprocess import preprocess_train

    require_finite(args.adata)  # NaN counts would otherwise pass as "already normalised" data
    out = preprocess_train(args.adata, args.output, args.num_hvgs, already_normalized=args.already_normalized)
    print(f"wrote {out}")
    return 0


def _preprocess_infer(args: argparse.Namespace) -> int:
    from state_core.data.preprocess import preprocess_infer

    out = preprocess_infer(
        args.adata,
        args.output,
        control_pert=args.control_condition,
        pert_col=args.pert_col,
        cell_type_key=args.celltype_col,
        seed=args.seed,
        batch_col=args.batch_col,
    )
    print(f"wrote {out}")
    return 0


def _import_arc(args: argparse.Namespace) -> int:
    from state_core.runs.arc_import import import_arc_state_run

    result = import_arc_state_run(args.model_dir, args.output, checkpoint=args.checkpoint)
    print(f"imported into {result.run_dir}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", add_help=False, help="train an ST model or baseline (key=value overrides)")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. training.max_steps=1000 model=state_sm")
    p.add_argument("-h", "--help", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("predict", help="predict the TOML test split of a run and evaluate it")
    _flag(p, "output_dir", required=True, help="run folder (<output_dir>/<name> of tx train)")
    _flag(p, "checkpoint", default="final", help="final (default), last, best, or a .ckpt name/path")
    _flag(
        p,
        "profile",
        default="full",
        choices=["full", "minimal", "de", "anndata", "vcc", "pds"],
        help="evaluation profile: full, minimal, de, anndata, vcc, pds",
    )
    _flag(p, "predict_only", action="store_true", help="write the AnnData files, skip metrics")
    _flag(p, "eval_dir", default=None, help="where to write (default <run>/eval_<checkpoint>)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("infer", help="apply a trained model to a new AnnData")
    _flag(p, "model_dir", required=True, help="run folder of tx train (or an imported model folder)")
    _flag(p, "adata", required=True, help="input .h5ad")
    _flag(p, "output", default=None, help="output .h5ad (default <adata>_simulated.h5ad)")
    _flag(p, "checkpoint", default="final", help="final (default), last, best, or a .ckpt path")
    _flag(p, "pert_col", default=None, help="perturbation column (default: the training column)")
    _flag(p, "embed_key", default=None, help="obsm key of input features (default: the training key)")
    _flag(p, "celltype_col", default=None, help="cell type column (default: the training column)")
    _flag(p, "celltypes", default=None, help="comma list: only these cell types")
    _flag(p, "batch_col", default=None, help="batch column (default: the training column)")
    _flag(p, "control_pert", default=None, help="control label (default: the training label)")
    _flag(
        p,
        "basal",
        default="sample",
        choices=["sample", "self"],
        help="sample: basal cells are controls of the same cell type; self: each cell is its own basal",
    )
    _flag(p, "pred_key", default=None, help="obsm key for predictions (default <embed_key>_pred)")
    _flag(p, "batch_size", type=int, default=16, help="cell sets per forward pass")
    _flag(p, "seed", type=int, default=0)
    _flag(
        p,
        "eval_pair",
        default=None,
        metavar="DIR",
        help="also write DIR/adata_pred.h5ad (predictions in X) and DIR/adata_real.h5ad (the input features), "
        "ready for `state eval run`, for held-out cells labelled with their real perturbations",
    )
    _flag(p, "triton", default=None, metavar="HOST:PORT", help="run the model on a Triton server over gRPC")
    p.set_defaults(func=_infer)

    p = sub.add_parser("import_arc", help="import a published arc-state run folder (restricted unpickling)")
    _flag(p, "model_dir", required=True, help="arc-state folder: config.yaml, var_dims.pkl, checkpoints/*.ckpt")
    _flag(p, "output", required=True, help="new run folder to write (must not exist)")
    _flag(p, "checkpoint", default="final.ckpt", help="checkpoint file name in <model_dir>/checkpoints")
    p.set_defaults(func=_import_arc)

    p = sub.add_parser("preprocess_train", help="normalise, log1p and select HVGs into obsm['X_hvg']")
    _flag(p, "adata", required=True)
    _flag(p, "output", required=True)
    _flag(p, "num_hvgs", type=int, required=True)
    _flag(p, "already_normalized", action="store_true", help="X is already log-normalised; only select HVGs")
    p.set_defaults(func=_preprocess_train)

    p = sub.add_parser("preprocess_infer", help="build a control template (controls of the same cell type)")
    _flag(p, "adata", required=True)
    _flag(p, "output", required=True)
    _flag(p, "control_condition", required=True)
    _flag(p, "pert_col", required=True)
    _flag(p, "celltype_col", default="cell_type")
    _flag(p, "batch_col", default=None)
    _flag(p, "seed", type=int, default=42)
    p.set_defaults(func=_preprocess_infer)
