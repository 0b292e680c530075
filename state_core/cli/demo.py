"""`state demo`: the main job end to end on a synthetic dataset."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from state_core.demo import run_demo

    result = run_demo(args.out, max_steps=args.max_steps)
    print(f"data:      {result.data_dir}\nST run:    {result.st_run}\nbaseline:  {result.baseline_run}\n"
          f"ST eval:   {result.st_eval}\nbase eval: {result.baseline_eval}")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--max-steps", type=int, default=300, help="ST training steps")
    parser.set_defaults(func=_run)
