"""One formatter and one line length for the whole repository: `ruff format` at 120 columns, and ruff's
pyflakes rules (unused imports, undefined names). Fix a failure with `ruff format . && ruff check --fix .`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ["state_core", "components", "pipelines", "tests", "bench", "images"]
RUFF = Path(sys.executable).parent / "ruff"  # a dev dependency, installed beside the test's interpreter


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_code_follows_the_house_style(command):
    done = subprocess.run([str(RUFF), *command, *CODE], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
