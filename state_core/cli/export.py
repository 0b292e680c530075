"""`state export` commands (not built yet)."""

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(func=lambda args: parser.print_help())
