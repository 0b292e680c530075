"""Entry point of the `state` command.

Each command group lives in its own module with a `register(subparsers)` function; this file only
wires them together and turns user errors into one clear message without a traceback. Groups of the
layers above the library (`state pipeline`, in `pipelines/cli.py`) come in through the `state_core.cli`
entry point group: a module with `HELP` and `register`, so the library never imports them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import sys

from state_core.errors import StateError

# group name -> (module, help). Modules are imported lazily so `state --help` stays fast.
GROUPS: dict[str, tuple[str, str]] = {
    "tx": ("state_core.cli.tx", "State Transition model: train, predict, infer, preprocess"),
    "emb": ("state_core.cli.emb", "State Embedding model: fit, transform"),
    "data": ("state_core.cli.data", "datasets: synthesize, split"),
    "eval": ("state_core.cli.eval", "evaluate predictions against real data (cell-eval compatible)"),
    "export": ("state_core.cli.export", "export models to ONNX and Triton model repositories"),
    "serve": ("state_core.cli.serve", "serve a Triton model repository locally"),
}
ENTRY_POINT_GROUP = "state_core.cli"


def command_groups() -> dict[str, tuple[str, str]]:
    """The library's groups, then those installed packages add (name -> module, help)."""
    groups = dict(GROUPS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in groups:
            groups[entry.name] = (entry.value, str(importlib.import_module(entry.value).HELP))
    return groups


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="state", description="Train, evaluate and serve State models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # entry points cost ~50 ms: read them only when no built-in group is asked for
    groups = GROUPS if any(a in GROUPS for a in argv) else command_groups()
    wanted = next((a for a in argv if a in groups), None)
    sub = parser.add_subparsers(dest="group", metavar="{" + ",".join(groups) + "}")
    for name, (module, help_text) in groups.items():
        if wanted is None or name == wanted:
            group_parser = sub.add_parser(name, help=help_text)
            importlib.import_module(module).register(group_parser)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.parse_args(argv + ["--help"])
        return 2
    try:
        result = func(args)
    except StateError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(getattr(err, "exit_code", 2))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
