"""Promotion gate: candidate vs baseline, and vs the serving model on the same test cells, on one metric."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def promotion_gate(
    candidate: Input[Metrics],
    baseline: Input[Metrics],
    comparison: Input[Artifact],
    metric: str,
    higher_is_better: bool,
    min_improvement: float,
    decision: Output[Markdown],
) -> bool:
    """True when the candidate beats the baseline and the serving model; the reasoning goes to `decision`."""
    from pathlib import Path

    from state_core.pipeline_ops.comparison import read_comparison
    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.promotion import gate_on_same_cells

    result = gate_on_same_cells(
        metrics_from_metadata(candidate.metadata),
        metrics_from_metadata(baseline.metadata),
        read_comparison(comparison.path),
        metric,
        higher_is_better,
        min_improvement,
    )
    Path(decision.path).write_text(result.as_markdown())
    return result.promote
