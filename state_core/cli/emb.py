"""`state emb` commands: fit, transform, export, import (State Embedding model)."""

from __future__ import annotations

import argparse


def _fit(args: argparse.Namespace) -> int:
    from state_core.embed.config import load_fit_config
    from state_core.cli.checks import require_text_file
    from state_core.embed.fit import fit_se

    require_text_file(args.conf, "--conf")
    model_dir = fit_se(load_fit_config(args.conf, args.overrides))
    print(f"SE model folder: {model_dir}")
    return 0


def _transform(args: argparse.Namespace) -> int:
    from state_core.embed.transform import TransformOptions, transform_h5ad

    options = TransformOptions(
        embed_key=args.embed_key,
        input_kind=args.input_kind,
        layer=args.layer,
        gene_column=args.gene_column,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        min_gene_coverage=args.min_gene_coverage,
        progress=not args.no_progress,
    )
    summary = transform_h5ad(args.checkpoint, args.input, args.output, options)
    print(
        f"wrote obsm[{args.embed_key!r}] ({summary.n_cells} x {summary.dim}, {summary.genes_mapped}/"
        f"{summary.n_genes} genes mapped, input {summary.input_kind}) to {summary.output}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from state_core.embed.export import export_se
    from state_core.serve.triton_config import config_for_backend, write_config

    result = export_se(args.checkpoint, args.output, tolerance=args.tolerance)
    if args.triton_name:
        write_config(result.folder, config_for_backend(args.triton_name, result.signature, args.backend))
    print(f"exported {result.onnx_path} (worst ORT vs torch difference {result.worst:.2e})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from state_core.embed.se_import import import_original_se

    out = import_original_se(args.model_folder, args.output, checkpoint=args.checkpoint)
    print(f"SE model folder: {out}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="{fit,transform,export,import}")
    parser.set_defaults(func=lambda args: parser.print_help())

    fit = sub.add_parser("fit", help="train an SE model on the h5ad files listed in a config")
    fit.add_argument("--conf", required=True, help="YAML or TOML config (see docs/embedding.md)")
    fit.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. trainer.max_steps=100")
    fit.set_defaults(func=_fit)

    tr = sub.add_parser("transform", help="embed the cells of an h5ad into obsm['X_state']")
    tr.add_argument(
        "--checkpoint",
        "--model-folder",
        dest="checkpoint",
        required=True,
        help="SE model folder (from `emb fit` or `emb import`) or a fit output folder",
    )
    tr.add_argument("--input", required=True, help="input .h5ad")
    tr.add_argument("--output", required=True, help="output .h5ad (a copy of the input plus the embedding)")
    tr.add_argument("--embed-key", default="X_state", help="obsm key to write (default X_state)")
    tr.add_argument(
        "--input-kind",
        choices=("raw", "log1p"),
        default=None,
        help="what X holds; default: the model's training convention",
    )
    tr.add_argument("--layer", default=None, help="read layers/<name> instead of X (e.g. counts)")
    tr.add_argument("--gene-column", default=None, help="var column with gene symbols (default var_names)")
    tr.add_argument("--batch-size", type=int, default=256)
    tr.add_argument("--seed", type=int, default=0, help="seeds each cell's sentence sampling")
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    tr.add_argument(
        "--min-gene-coverage",
        type=float,
        default=0.5,
        help="stop if fewer than this fraction of the file's genes are in the vocabulary",
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_transform)

    ex = sub.add_parser("export", help="export the SE encoder to ONNX (parity-gated) with metadata.json")
    ex.add_argument("--checkpoint", required=True, help="SE model folder")
    ex.add_argument("--output", required=True, help="output folder for model.onnx and metadata.json")
    ex.add_argument("--tolerance", type=float, default=1e-5)
    ex.add_argument("--triton-name", default=None, help="also write config.pbtxt for a Triton model of this name")
    ex.add_argument("--backend", choices=("onnxruntime", "python"), default="onnxruntime")
    ex.set_defaults(func=_export)

    im = sub.add_parser("import", help="convert an original SE folder (ckpt, protein_embeddings.pt, config.yaml)")
    im.add_argument("--model-folder", required=True, help="the original folder, e.g. SE-600M")
    im.add_argument("--checkpoint", default=None, help="checkpoint file inside it (required if there are several)")
    im.add_argument("--output", required=True, help="our SE model folder to write")
    im.set_defaults(func=_import)
