"""`state data` commands. Each subcommand is added by one small `_add_<name>` function."""

from __future__ import annotations

import argparse
from pathlib import Path


def require_output_folder(path: Path, flag: str = "--out") -> None:
    """`--out` is a folder (created if missing); an existing file there is one clear error, before any work."""
    from state_core.errors import ConfigError, Problem

    if path.exists() and not path.is_dir():
        raise ConfigError("command line", Problem(flag, f"{path} is a file, not a folder", "give a folder path"))


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command")
    _add_split(sub)
    _add_synth(sub)
    parser.set_defaults(func=lambda args: parser.print_help())


def add_obs_column_flags(parser: argparse.ArgumentParser) -> None:
    """--pert-col / --cell-type-key / --batch-col / --control-pert with the original tools' defaults."""
    parser.add_argument("--pert-col", default="gene", help="obs column with the perturbation (default: gene)")
    parser.add_argument(
        "--cell-type-key", default="cell_type", help="obs column with the cell type (default: cell_type)"
    )
    parser.add_argument(
        "--batch-col", default="gem_group", help="obs column with the batch; 'none' for no batch (default: gem_group)"
    )
    parser.add_argument(
        "--control-pert", default="non-targeting", help="label of control cells (default: non-targeting)"
    )


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="assign cells to train/val/test from an experiment TOML",
        description="Validate the experiment TOML against the data and write split_manifest.npz, "
        "split_summary.json and split_summary.md into --out.",
    )
    p.add_argument(
        "--toml", required=True, type=Path, help="experiment TOML ([datasets], [training], [zeroshot], [fewshot])"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder for the split artifacts")
    add_obs_column_flags(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the fewshot control division (default: 0)")
    p.add_argument("--cache-dir", type=Path, default=None, help="download cache for gs:// datasets")
    p.set_defaults(func=_run_split)


def _run_split(args: argparse.Namespace) -> int:
    from state_core.config.experiment import ObsColumns
    from state_core.data.splits import SUMMARY_MD, run_split

    require_output_folder(args.out)
    batch_col = None if args.batch_col.lower() in ("", "none") else args.batch_col
    columns = ObsColumns(args.pert_col, args.cell_type_key, batch_col, args.control_pert)
    run_split(args.toml, args.out, columns, seed=args.seed, cache_dir=args.cache_dir)
    print((args.out / SUMMARY_MD).read_text(), end="")
    return 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic Perturb-seq experiment (h5ad + zeroshot/fewshot TOMLs)",
        description="Negative-binomial counts with cell types, batches, a control label and knock-down "
        "perturbations; preprocessed (log1p, X_hvg) and written with zeroshot.toml and fewshot.toml.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--n-cells", type=int, default=6000)
    p.add_argument("--n-genes", type=int, default=400)
    p.add_argument("--n-cell-types", type=int, default=3)
    p.add_argument("--n-perturbations", type=int, default=16)
    p.add_argument("--n-batches", type=int, default=2)
    p.add_argument("--num-hvgs", type=int, default=128, help="width of obsm['X_hvg']")
    p.add_argument("--n-files", type=int, default=1, help="split the cells over this many h5ad files")
    p.add_argument("--dense", action="store_true", help="dense X instead of CSR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from state_core.data.synth import SynthSpec, write_synthetic_experiment

    require_output_folder(args.out)
    spec = SynthSpec(
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        n_cell_types=args.n_cell_types,
        n_perturbations=args.n_perturbations,
        n_batches=args.n_batches,
        seed=args.seed,
        sparse=not args.dense,
    )
    exp = write_synthetic_experiment(args.out, spec, num_hvgs=args.num_hvgs, n_files=args.n_files)
    print(
        "\n".join(
            [
                "h5ad:     " + ", ".join(str(p) for p in exp.h5ad_paths),
                f"zeroshot: {exp.zeroshot_toml}",
                f"fewshot:  {exp.fewshot_toml}",
            ]
        )
    )
    return 0
