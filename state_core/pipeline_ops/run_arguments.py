"""Pipeline run arguments from the command line (`--param key=value`), checked against the pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from state_core.errors import ConfigError, Problem


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, lists, objects), otherwise the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_run_arguments(items: Iterable[str], known: Mapping[str, bool]) -> dict[str, Any]:
    """`key=value` items -> arguments. `known` maps each pipeline parameter to whether it is optional.

    Unknown keys, malformed items and missing required parameters are reported together.
    """
    arguments: dict[str, Any] = {}
    problems: list[Problem] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(Problem(item, "not of the form key=value", "write e.g. --param gpu_count=2"))
        elif key not in known:
            problems.append(
                Problem(
                    key,
                    "not a parameter of this pipeline",
                    f"use one of {', '.join(sorted(known))}",
                )
            )
        else:
            arguments[key] = parse_value(value)
    for name, optional in sorted(known.items()):
        if not optional and name not in arguments:
            problems.append(Problem(name, "required parameter not given", f"add --param {name}=..."))
    if problems:
        raise ConfigError("pipeline parameters", problems)
    return arguments
