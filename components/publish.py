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
) -> int:
    """Add the next version of `model_name` with a record of its metrics; returns the version number."""
    from state_core.pipeline_ops.publishing import publish_version

    record = publish_version(onnx_model.path, model_repository, model_name, metrics.metadata,
                             run_uri=onnx_model.uri, experiment_toml=experiment_toml)
    return record.version
