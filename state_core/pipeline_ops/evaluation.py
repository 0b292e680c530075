"""The evaluate stage: predict a run's test split, score it like cell-eval, reduce to one number per metric
(`state_core.eval.summary` owns the reduction and its NaN rule).

Also the round trip of those numbers through a KFP `Metrics` artifact, whose metadata must be JSON a
Kubeflow backend accepts: NaN (cell-eval's value for undefined metrics) is not, so undefined metrics are
listed by name under `UNDEFINED_KEY` and come back as NaN for the promotion gate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from state_core.errors import ArtifactError

UNDEFINED_KEY = "undefined_metrics"
REPORT_FILE = "report.html"  # one page for every test cell type, written by `tx predict`'s evaluation


@dataclass(frozen=True)
class EvaluationSummary:
    metrics: dict[str, float]  # metric -> mean over perturbations and cell types (NaN: undefined, see eval.summary)
    report_html: Path
    folder: Path
    reasons: dict[str, str] | None = None  # undefined metric -> why


def evaluate_run(run_dir: str | Path, out_dir: str | Path) -> EvaluationSummary:
    """Predict and evaluate the test split of `run_dir` into `out_dir` (one sub-folder per test cell type)."""
    from state_core.train.predict import predict_and_evaluate

    result = predict_and_evaluate(run_dir, evaluate=True, out_dir=out_dir)
    if result.summary is None or not result.summary.means:
        raise ArtifactError(
            f"{result.folder}: the evaluation gave no metrics; does the test split hold "
            "perturbed cells in expression space?"
        )
    return EvaluationSummary(
        metrics=dict(result.summary.means),
        report_html=result.folder / REPORT_FILE,
        folder=result.folder,
        reasons=dict(result.summary.reasons),
    )


def metrics_to_metadata(metrics: Mapping[str, float]) -> dict[str, float | str]:
    """Finite metrics as numbers, the names of undefined ones in one comma-separated entry."""
    metadata: dict[str, float | str] = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
    undefined = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if undefined:
        metadata[UNDEFINED_KEY] = ",".join(undefined)
    return metadata


def metrics_from_metadata(metadata: Mapping[str, object]) -> dict[str, float]:
    """Inverse of `metrics_to_metadata`; other metadata entries (e.g. display names) are ignored."""
    metrics = {k: float(v) for k, v in metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name in str(metadata.get(UNDEFINED_KEY, "")).split(","):
        if name:
            metrics[name] = math.nan
    return metrics
