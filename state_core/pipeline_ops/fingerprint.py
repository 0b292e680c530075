"""A fingerprint of an experiment's inputs, so scheduled retraining can skip runs when nothing changed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from state_core.config.experiment import load_experiment


def _file_identity(uri: str) -> str:
    """Cheap identity of one file: size and modification stamp locally, generation and md5 on GCS."""
    from state_core.storage import gcs_client, is_gcs, split_gcs_uri

    if is_gcs(uri):
        bucket, name = split_gcs_uri(uri)
        blob = gcs_client().bucket(bucket).get_blob(name)
        return (
            f"{uri}|missing"
            if blob is None
            else f"{uri}|{blob.generation}|{blob.size}|{blob.md5_hash}"
        )
    stat = Path(uri).stat()
    return f"{uri}|{stat.st_size}|{stat.st_mtime_ns}"


def experiment_fingerprint(toml_uri: str | Path) -> str:
    """sha256 over the TOML text and the identity of every data file it names (local or gs:// TOML)."""
    from state_core.storage import list_files, localize

    toml_path = localize(str(toml_uri))
    experiment = load_experiment(toml_path)
    parts = [toml_path.read_text(encoding="utf-8")]
    for name in sorted(experiment.datasets):
        parts += [_file_identity(f) for f in list_files(experiment.datasets[name])]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def data_changed_since_serving(
    toml_uri: str | Path, model_repository: str, model_name: str
) -> bool:
    """True unless the serving model's publish record carries this exact data fingerprint."""
    from state_core.pipeline_ops.publish_record import serving_record

    record = serving_record(model_repository, model_name)
    return record is None or record.data_fingerprint != experiment_fingerprint(toml_uri)
