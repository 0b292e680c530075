"""The publish stage: an exported model becomes the served version, with a record of why it was promoted."""

from __future__ import annotations

from collections.abc import Mapping

from state_core.pipeline_ops.fingerprint import experiment_fingerprint
from state_core.pipeline_ops.publish_record import PublishRecord, write_record


def publish_version(
    exported_dir: str,
    repository: str,
    model_name: str,
    metrics: Mapping[str, float],
    *,
    run_uri: str = "",
    experiment_toml: str = "",
    backend: str = "onnxruntime",
) -> PublishRecord:
    """Publish `exported_dir` (model.onnx + metadata.json) as the next version and record its metrics.

    The record is written right after the version goes live; a gate that runs in between finds no record
    and holds its candidate, which is the safe side.
    """
    from state_core.serve.repository import publish_model

    published = publish_model(repository, model_name, exported_dir, backend=backend)
    record = PublishRecord(
        model_name=model_name,
        version=published.version,
        metrics={str(k): float(v) for k, v in metrics.items()},
        run_uri=run_uri,
        data_fingerprint=experiment_fingerprint(experiment_toml)
        if experiment_toml
        else "",
    )
    write_record(repository, record)
    return record
