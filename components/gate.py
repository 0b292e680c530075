"""Promotion gate: candidate vs baseline, and vs the serving model on the same test cells, on one metric."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def promotion_gate(
    candidate: Input[Metrics],
    baseline: Input[Metrics],
    candidate_results: Input[Dataset],
    baseline_results: Input[Dataset],
    comparison: Input[Artifact],
    metric: str,
    higher_is_better: bool,
    min_improvement: float,
    decision: Output[Markdown],
    report: Output[HTML],
) -> bool:
    """True when the candidate beats the baseline and the serving model; the reasoning goes to `decision`,
    the comparison page (candidate / baseline / serving, per cell type, with the outcome) to `report`."""
    from pathlib import Path

    from state_core.pipeline_ops.comparison import read_comparison
    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.promotion import gate_on_same_cells, write_gate_report

    result = gate_on_same_cells(
        metrics_from_metadata(candidate.metadata),
        metrics_from_metadata(baseline.metadata),
        read_comparison(comparison.path),
        metric,
        higher_is_better,
        min_improvement,
    )
    Path(decision.path).write_text(result.as_markdown())
    write_gate_report(result, candidate_results.path, baseline_results.path, comparison.path, report.path)
    return result.promote
