"""Evaluate stage: run folder -> test-split predictions, cell-eval metrics and an HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    data_fingerprint: str,
    results: Output[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Predict the test split, score it like cell-eval, and log the mean of each metric."""
    import shutil

    from state_core.pipeline_ops.evaluation import evaluate_run, metrics_to_metadata

    summary = evaluate_run(model.path, results.path)
    for name, value in sorted(metrics_to_metadata(summary.metrics).items()):
        if isinstance(value, float):
            metrics.log_metric(name, value)
        else:
            metrics.metadata[name] = value
    metrics.metadata["data_fingerprint"] = data_fingerprint
    shutil.copyfile(summary.report_html, report.path)
