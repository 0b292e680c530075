"""Publish stage: exported model -> a new version in the Triton model repository (local or gs://)."""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def publish_model(
    onnx_model: Input[Model],
    metrics: Input[Metrics],
    model_repository: str,
    model_name: str,
    experiment_toml: str,
    triton_backend: str,
) -> int:
    """Serve the next version of `model_name` (backend: onnxruntime, or python on CPU-only hosts) with a
    record of its metrics and training data; returns the version number."""
    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.publishing import publish_version

    record = publish_version(
        onnx_model.path,
        model_repository,
        model_name,
        metrics_from_metadata(metrics.metadata),
        run_uri=onnx_model.uri,
        experiment_toml=experiment_toml,
        backend=triton_backend,
    )
    return record.version
