"""cell-eval compatible evaluation of predicted vs real perturbation data, with an HTML report.

Public API: `evaluate`, `EvalResult`, `write_report`, `score`, `build_baseline`, `profile_metrics`,
`summarize` / `MetricSummary` (one number per metric over cell types), `read_result` (a stored outdir),
`evaluate_files` (`state eval run`: prediction location, self-scoring refused).
Modules are imported lazily so `import state_core.eval` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from state_core.eval.aggregate import score
    from state_core.eval.baseline import build_baseline
    from state_core.eval.evaluation import EvalResult, evaluate
    from state_core.eval.registry import profile_metrics
    from state_core.eval.report import write_report
    from state_core.eval.result_files import read_result
    from state_core.eval.sources import evaluate_files
    from state_core.eval.summary import MetricSummary, summarize

__all__ = [
    "EvalResult",
    "MetricSummary",
    "build_baseline",
    "evaluate",
    "evaluate_files",
    "profile_metrics",
    "read_result",
    "score",
    "summarize",
    "write_report",
]

_EXPORTS = {
    "evaluate": "state_core.eval.evaluation",
    "EvalResult": "state_core.eval.evaluation",
    "score": "state_core.eval.aggregate",
    "build_baseline": "state_core.eval.baseline",
    "write_report": "state_core.eval.report",
    "profile_metrics": "state_core.eval.registry",
    "summarize": "state_core.eval.summary",
    "MetricSummary": "state_core.eval.summary",
    "read_result": "state_core.eval.result_files",
    "evaluate_files": "state_core.eval.sources",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
