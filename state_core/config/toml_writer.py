"""The one TOML writer: experiment TOML files (the subset the format uses: tables of strings, numbers, booleans
and lists). Read them with `state_core.config.experiment`; tomllib has no writer and no TOML writer library is
a dependency."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    raise TypeError(f"{where}: cannot write a {type(value).__name__} to TOML")


def _table(path: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    for key, value in scalars.items():
        out.append(f"{_key(key)} = {_value(value, '.'.join(path + [key]))}")
    if scalars:
        out.append("")
    for key, value in tables.items():
        _table(path + [key], value, out)


def dumps(document: Mapping[str, Any]) -> str:
    """TOML text for a nested mapping; keys keep their order so a rewritten file diffs cleanly."""
    lines: list[str] = []
    _table([], document, lines)
    return "\n".join(lines).rstrip("\n") + "\n"
