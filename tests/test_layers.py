"""The packages of `state_core` import only from layers below their own: no arrow runs back up, no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import state_core

# lowest first; a package may import from any earlier layer (docs/design.md, "Concept -> module")
LAYERS = (
    ("errors",),
    ("atomic", "extras"),
    ("config", "storage"),
    ("data",),
    ("models",),
    ("eval", "runs"),
    ("export",),
    ("serve", "embed"),
    ("train",),
    ("pipeline_ops",),
    ("cli",),
)
APP_LAYERS = ("components", "pipelines")
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}
ROOT = Path(state_core.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def _imported_packages(path: Path) -> set[str]:
    return {n.split(".")[1] for n in _imported_modules(path) if n.startswith("state_core.")}


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LEVEL), sorted((packages | modules) - set(LEVEL))


def test_imports_point_down_the_layers():
    upward = []
    for path in ROOT.rglob("*.py"):
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        upward += [
            f"{path.relative_to(ROOT)} imports state_core.{target}"
            for target in _imported_packages(path)
            if target != own and LEVEL[target] >= LEVEL[own]
        ]
    assert not upward, "\n".join(sorted(upward))


def test_the_library_never_imports_the_app_layers():
    """`components/` and `pipelines/` sit above `state_core` (`state pipeline` comes in by entry point)."""
    above = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in ROOT.rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[0] in APP_LAYERS
    ]
    assert not above, "\n".join(sorted(above))
