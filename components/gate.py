"""Promotion gate: candidate vs baseline vs the model now serving, on one metric."""

from kfp import dsl
from kfp.dsl import Input, Markdown, Metrics, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def promotion_gate(
    candidate: Input[Metrics],
    baseline: Input[Metrics],
    model_repository: str,
    model_name: str,
    metric: str,
    higher_is_better: bool,
    min_improvement: float,
    decision: Output[Markdown],
) -> bool:
    """True when the candidate beats the baseline and the serving model; the reasoning goes to `decision`."""
    from pathlib import Path

    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.promotion import gate_against_repository

    result = gate_against_repository(
        metrics_from_metadata(candidate.metadata),
        metrics_from_metadata(baseline.metadata),
        model_repository,
        model_name,
        metric,
        higher_is_better,
        min_improvement,
    )
    Path(decision.path).write_text(result.as_markdown())
    return result.promote
