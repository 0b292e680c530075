"""Compare stage: the serving model re-evaluated on the candidate's test cells."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def score_serving_model(
    candidate: Input[Model],
    candidate_metrics: Input[Metrics],
    model_repository: str,
    model_name: str,
    comparison: Output[Artifact],
    note: Output[Markdown],
):
    """Score the serving version on the candidate's test split (labels it cannot predict left out, with a
    note); `comparison` holds comparison.json and both evaluations of the compared cells."""
    from pathlib import Path

    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.same_cells import compare_on_candidate_cells

    result = compare_on_candidate_cells(
        candidate.path,
        metrics_from_metadata(candidate_metrics.metadata),
        model_repository,
        model_name,
        comparison.path,
    )
    comparison.metadata["status"] = result.status
    Path(note.path).write_text(f"# Serving model on the candidate's test cells\n\n{result.note}\n")
