"""The promotion gate: publish a candidate model only if it beats the baseline and the model now serving;
and the comparison page that shows the decision with the numbers behind it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from state_core.atomic import atomic_write_text

from state_core.errors import ConfigError, Problem
from state_core.pipeline_ops.comparison import COMPARED, NONE_SERVING, SameCellsComparison


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to publish, the numbers the decision used, and a sentence a reviewer can read in the UI."""

    promote: bool
    metric: str
    higher_is_better: bool
    candidate: float
    baseline: float
    serving: float | None  # the serving model on the candidate's test cells
    reason: str
    candidate_same_cells: float | None = None  # the candidate on those cells (differs when labels were left out)
    min_improvement: float = 0.0

    def rule(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        return (
            f"publish when {self.metric} ({direction} is better) beats the baseline and the serving model "
            f"(re-evaluated on the same test cells) by more than {self.min_improvement:g}; "
            "an undefined (NaN) candidate or baseline value holds"
        )

    def as_markdown(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        serving = "none" if self.serving is None else f"{self.serving:.6g}"
        same = (
            ""
            if self.candidate_same_cells is None
            else f"| candidate on the serving model's cells | {self.candidate_same_cells:.6g} |\n"
        )
        verdict = "PROMOTE" if self.promote else "HOLD (nothing published)"
        return (
            f"# Promotion gate: {verdict}\n\n"
            f"Metric `{self.metric}` ({direction} is better)\n\n"
            f"| model | value |\n|---|---|\n"
            f"| candidate | {self.candidate:.6g} |\n| baseline | {self.baseline:.6g} |\n{same}"
            f"| serving (re-evaluated on the same cells) | {serving} |\n\n"
            f"{self.reason}\n"
        )


def _metric_value(metrics: Mapping[str, float], metric: str, which: str) -> float:
    if metric not in metrics:
        known = ", ".join(sorted(metrics)) or "(no metrics)"
        raise ConfigError(
            f"{which} metrics",
            Problem(
                metric,
                f"gate metric is not among the {which} model's metrics: {known}",
                "pick one of those as the pipeline's gate_metric parameter",
            ),
        )
    return float(metrics[metric])


def _beats(candidate: float, other: float, higher_is_better: bool, min_improvement: float) -> bool:
    return candidate - other > min_improvement if higher_is_better else other - candidate > min_improvement


def should_promote(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    serving_metrics: Mapping[str, float] | None,
    metric: str,
    higher_is_better: bool,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Decide whether the candidate replaces the serving model.

    The candidate must be strictly better than the baseline and than the serving model (when one exists)
    by more than `min_improvement`. A NaN anywhere holds the candidate back: cell-eval reports NaN for
    degenerate inputs, and a NaN must never pass a gate by failing every comparison.
    """
    candidate = _metric_value(candidate_metrics, metric, "candidate")
    baseline = _metric_value(baseline_metrics, metric, "baseline")
    serving = None if serving_metrics is None else _metric_value(serving_metrics, metric, "serving")

    def decide(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promote,
            metric,
            higher_is_better,
            candidate,
            baseline,
            serving,
            reason,
            min_improvement=min_improvement,
        )

    if math.isnan(candidate):
        return decide(False, f"The candidate's {metric} is NaN; check its evaluation output.")
    if math.isnan(baseline):
        return decide(
            False,
            f"The baseline's {metric} is NaN, so the candidate cannot be shown to beat it; "
            "choose a gate metric the baseline defines.",
        )
    if not _beats(candidate, baseline, higher_is_better, min_improvement):
        return decide(
            False,
            f"The candidate does not beat the baseline on {metric} (margin required: {min_improvement:g}).",
        )
    if serving is None:
        return decide(True, "The candidate beats the baseline and no model is serving yet.")
    if math.isnan(serving):
        return decide(
            True,
            f"The candidate beats the baseline; the serving model's {metric} is NaN, so any defined value replaces it.",
        )
    if not _beats(candidate, serving, higher_is_better, min_improvement):
        return decide(
            False,
            f"The candidate beats the baseline but not the serving model on {metric} "
            f"(margin required: {min_improvement:g}).",
        )
    return decide(True, "The candidate beats both the baseline and the serving model.")


def gate_on_same_cells(
    candidate_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    comparison: SameCellsComparison,
    metric: str,
    higher_is_better: bool,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """The gate of the pipeline: candidate vs baseline on the candidate's test split, then candidate vs the
    serving model re-evaluated on the same test cells (`comparison`, from `same_cells`).

    Metrics a serving model recorded at its own publish time are never used: they were measured on other
    data. When the serving model cannot be scored on the new cells, the candidate is held with the reason.
    """
    against_baseline = should_promote(
        candidate_metrics, baseline_metrics, None, metric, higher_is_better, min_improvement
    )
    if not against_baseline.promote or comparison.status == NONE_SERVING:
        return against_baseline

    def decide(
        promote: bool, reason: str, serving: float | None = None, candidate_same: float | None = None
    ) -> PromotionDecision:
        return dataclasses.replace(
            against_baseline,
            promote=promote,
            serving=serving,
            candidate_same_cells=candidate_same,
            reason=f"{reason} {comparison.note}".strip(),
        )

    if comparison.status != COMPARED:
        return decide(False, "The candidate beats the baseline, but it cannot be compared with the serving model.")
    candidate = _metric_value(comparison.candidate, metric, "candidate (same cells)")
    serving = _metric_value(comparison.serving, metric, "serving")
    if math.isnan(candidate):
        return decide(False, f"The candidate's {metric} on the serving model's cells is NaN.", serving, candidate)
    if math.isnan(serving):
        return decide(
            True,
            f"The candidate beats the baseline; the serving model's {metric} on the same cells is "
            "NaN, so any defined value replaces it.",
            serving,
            candidate,
        )
    if not _beats(candidate, serving, higher_is_better, min_improvement):
        return decide(
            False,
            f"The candidate beats the baseline but not the serving model on {metric} "
            f"(same test cells; margin required: {min_improvement:g}).",
            serving,
            candidate,
        )
    return decide(
        True, "The candidate beats both the baseline and the serving model (same test cells).", serving, candidate
    )


def write_gate_report(
    decision: PromotionDecision,
    candidate_results: str | Path,
    baseline_results: str | Path,
    comparison_folder: str | Path,
    out_html: str | Path,
) -> Path:
    """The one page a reviewer reads: candidate vs baseline vs the serving version, metric by metric and per
    cell type, with the gate's rule and outcome (`state_core.eval.report` renders it)."""
    from state_core.eval.report import GateView, ReportModel, render_html
    from state_core.pipeline_ops.comparison import read_comparison
    from state_core.pipeline_ops.same_cells import CANDIDATE_EVAL, SERVING_EVAL

    models = [
        ReportModel.from_folder("candidate", candidate_results),
        ReportModel.from_folder("baseline", baseline_results),
    ]
    comparison = read_comparison(comparison_folder)
    notes = [comparison.note]
    title = "Candidate vs baseline"
    if comparison.status == COMPARED:
        title += f" vs serving version {comparison.serving_version}"
        folder = Path(comparison_folder)
        if (folder / CANDIDATE_EVAL).is_dir():
            models.append(ReportModel.from_folder("candidate on the serving model's cells", folder / CANDIDATE_EVAL))
        models.append(ReportModel.from_folder(f"serving v{comparison.serving_version}", folder / SERVING_EVAL))
    gate = GateView(metric=decision.metric, rule=decision.rule(), promote=decision.promote, reason=decision.reason)
    page = render_html(models, title=title, gate=gate, notes=notes)
    atomic_write_text(Path(out_html), page)
    return Path(out_html)
