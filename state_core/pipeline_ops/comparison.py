"""The result of scoring the serving model on the candidate's test cells (see `same_cells`), as the
promotion gate reads it: plain data, JSON on disk, no model code."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

COMPARISON_FILE = "comparison.json"  # inside the comparison artifact folder
NONE_SERVING = "no serving model"
COMPARED = "compared"
IMPOSSIBLE = "impossible"


@dataclass(frozen=True)
class SameCellsComparison:
    """Candidate and serving metrics on one set of test cells (or why there are none)."""

    status: str  # NONE_SERVING | COMPARED | IMPOSSIBLE
    note: str
    serving_version: int = 0
    candidate: dict[str, float] = field(default_factory=dict)
    serving: dict[str, float] = field(default_factory=dict)
    skipped_labels: dict[str, list[str]] = field(default_factory=dict)  # kind -> labels left out
    n_test_cells: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, allow_nan=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SameCellsComparison:
        return cls(**json.loads(text))


def read_comparison(folder: str | Path) -> SameCellsComparison:
    return SameCellsComparison.from_json((Path(folder) / COMPARISON_FILE).read_text())
