"""Publish stage: exported model -> a new version in the Triton model repository (local or gs://)."""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def publish_model(
    onnx_model: Input[Model],
    trained_model: Input[Model],
    metrics: Input[Metrics],
    model_repository: str,
    model_name: str,
    triton_backend: str,
    triton_ready_url: str,
) -> int:
    """Serve the next version of `model_name` (backend: onnxruntime, or python on CPU-only hosts) with a
    record of its metrics and the data fingerprint it was trained on; returns the version number."""
    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.publishing import publish_version

    record = publish_version(
        onnx_model.path,
        model_repository,
        model_name,
        metrics_from_metadata(metrics.metadata),
        run_dir=trained_model.path,
        run_uri=trained_model.uri,
        data_fingerprint=str(trained_model.metadata.get("data_fingerprint", "")),
        backend=triton_backend,
        triton_ready_url=triton_ready_url,
    )
    return record.version
