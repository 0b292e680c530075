"""Running `state` in-process and checking that a failed command left the file system as it was."""

from __future__ import annotations

import contextlib
import io
import socket
from dataclasses import dataclass
from pathlib import Path

TINY = [
    "model=state_sm",
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=8",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=1",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
    "model.kwargs.transformer_backbone_kwargs.intermediate_size=64",
    "training.batch_size=2",
    "training.progress_bar=false",
    "training.val_freq=4",
    "training.ckpt_every_n_steps=4",
    "training.num_threads=1",
]


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list[str]) -> CliResult:
    """`state <argv>` in this process: exit status, stdout and stderr (argparse exits are caught)."""
    from state_core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(int(code), out.getvalue(), err.getvalue())


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under `roots`: equal snapshots = nothing written, changed or removed."""
    found: dict[str, tuple[int, int]] = {}
    for root in roots:
        if root.is_file():
            stat = root.stat()
            found[str(root)] = (stat.st_size, stat.st_mtime_ns)
        elif root.is_dir():
            found[str(root)] = (-1, 0)
            for path in root.rglob("*"):
                stat = path.lstat()
                found[str(path)] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns if path.is_file() else 0)
    return found


def closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
