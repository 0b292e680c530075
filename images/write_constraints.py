"""Write images/train-constraints.txt: exact versions of every package `state-core` needs at run time.

The versions are read from the environment the test suite ran in, so the image installs what CI tested:

    .venv/bin/python images/write_constraints.py            # rewrite the file
    .venv/bin/python images/write_constraints.py --check    # exit 1 if the file is out of date

Only the run-time closure of the project's own dependencies is pinned, with the extras the Dockerfile
installs (`/src[...]`; no dev extras, no tools). torch is
pinned by version only: the image installs the CUDA build of that version, CI the CPU build, and the CUDA
build's own `nvidia-*` dependencies are pinned exactly by torch itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

OUT = Path(__file__).with_name("train-constraints.txt")
DOCKERFILE = Path(__file__).with_name("train.Dockerfile")
PROJECT = "state-core"
HEADER = (
    "# Exact run-time versions of state-core's dependencies, used by images/train.Dockerfile and `make`\n"
    "# (pip install -c). Generated from the tested environment by images/write_constraints.py; do not edit.\n"
)


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    environments = [{**default_environment(), "extra": extra} for extra in (extras or {""})]
    return any(requirement.marker.evaluate(env) for env in environments)


def image_extras(dockerfile: str) -> set[str]:
    """The extras of the project install line (`pip install -c ... /src[a,b]`) of the Dockerfile."""
    match = re.search(r"pip install -c \S+ \"?/src(?:\[([^\]]*)\])?", dockerfile)
    if match is None:
        raise SystemExit(f"{DOCKERFILE}: no `pip install -c <constraints> /src` line")
    return {extra.strip() for extra in (match.group(1) or "").split(",") if extra.strip()}


def closure(project: str = PROJECT, extras: set[str] | None = None) -> dict[str, str]:
    """name -> installed version of every package `project` (with `extras`) pulls in (itself excluded)."""
    found: dict[str, str] = {}
    pending: list[tuple[str, set[str]]] = [(project, set(extras or ()))]
    visited: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, frozenset(extras)) in visited:
            continue
        visited.add((name, frozenset(extras)))
        dist = metadata.distribution(name)
        if name != project:
            found[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if _wanted(requirement, extras):
                pending.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return found


def render(pins: dict[str, str]) -> str:
    # a local version label (+cpu) names one build; the version itself is what both builds share
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(pins.items())]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the file on disk")
    args = parser.parse_args(argv)
    text = render(closure(extras=image_extras(DOCKERFILE.read_text())))
    if args.check:
        if OUT.exists() and OUT.read_text() == text:
            return 0
        print(f"{OUT} is out of date: run {Path(__file__).name} with the tested environment's python", file=sys.stderr)
        return 1
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - 2} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
