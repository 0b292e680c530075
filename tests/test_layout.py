"""The repository's top-level folders never shadow an installed package when Python runs from the root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docker_sdk_is_not_shadowed_from_the_repository_root():
    # kfp.local imports the Docker SDK optionally; a `docker/` folder here once resolved as a namespace package
    probe = "import importlib.util as u; s = u.find_spec('docker'); print(s.origin if s and s.origin else s)"
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert str(ROOT) not in found.stdout, found.stdout
    import kfp.local  # noqa: F401 - imports without tripping over a local folder


def test_the_image_constraints_pin_what_the_tests_run_with():
    check = subprocess.run(
        [sys.executable, "images/write_constraints.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_the_image_and_make_install_with_the_constraints():
    dockerfile = (ROOT / "images" / "train.Dockerfile").read_text()
    assert dockerfile.count("pip install -c /src/constraints.txt") == 2  # torch, then the project
    assert "-c $(CONSTRAINTS)" in (ROOT / "Makefile").read_text()
    assert "!images/train-constraints.txt" in (ROOT / "images" / "train.Dockerfile.dockerignore").read_text()
