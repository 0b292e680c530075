"""Small helpers shared by the benches: load average, repeat summaries, peer venvs under bench/.cache."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"


def load_average() -> str:
    """The 1-minute load average and the core count, printed with every figure ("load 1.9/2")."""
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()}"


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max) of the repeats."""
    return min(values), statistics.median(values), max(values)


def fmt_spread(values: list[float], digits: int = 0) -> str:
    lo, mid, hi = spread(values)
    return f"{mid:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"


def peer_venv(name: str, packages: list[str], torch_first: bool) -> Path | None:
    """bench/.cache/<name>/bin/python with `packages` installed (once; never into the project's venv).

    Installs from the configured package index; returns None (the bench then skips the peer) when
    the install fails.
    """
    venv = CACHE / name
    python = venv / "bin" / "python"
    if (venv / ".ok").exists():
        return python
    print(f"installing {' '.join(packages)} into {venv} (one-off, a few minutes) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        if torch_first:  # the CPU wheel first, so nothing later resolves torch to a CUDA build
            subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + packages, check=True)
    except (subprocess.SubprocessError, OSError) as err:
        print(f"peer unavailable ({err}); skipped")
        return None
    (venv / ".ok").touch()
    return python
