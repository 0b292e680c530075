"""Cron expressions for recurring pipeline runs.

Kubeflow's scheduler (robfig/cron) takes six fields with seconds first, while people write the five-field
crontab form. We accept both, plus the `@daily`-style shorthands, and always hand KFP six fields.
"""

from __future__ import annotations

import re

from state_core.errors import ConfigError, Problem

_FIELD = re.compile(r"^[0-9A-Za-z*?,/\-]+$")
_SHORTHANDS = (
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
)


def to_kfp_cron(expression: str) -> str:
    """Return the six-field cron KFP expects; raise `ConfigError` naming the bad expression."""
    text = " ".join(expression.split())
    if text in _SHORTHANDS or text.startswith("@every "):
        return text
    fields = text.split(" ") if text else []
    bad = [f for f in fields if not _FIELD.match(f)]
    if len(fields) not in (5, 6) or bad:
        detail = f"characters not allowed in {bad}" if bad else f"{len(fields)} fields"
        raise ConfigError(
            "--cron",
            Problem(
                repr(expression),
                f"not a cron expression ({detail})",
                "use five fields 'min hour day month weekday' (e.g. '0 2 * * *' for 02:00 daily), "
                "six with seconds first, or @daily/@weekly",
            ),
        )
    return text if len(fields) == 6 else "0 " + text
