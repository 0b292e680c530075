"""A fingerprint of an experiment's data: the identity that drives caching and scheduled retraining.

Computed once at the start of a pipeline run and passed as an input to every step that reads the data, so
new data behind an unchanged URI changes those steps' cache keys (KFP never looks behind a URI), and the
publish record stores the fingerprint the model was trained on rather than one computed later.

Cheap on purpose: it reads no matrices. Local files contribute size, modification time and a hash of their
first and last 64 KiB (an HDF5 file's superblock and, in practice, the metadata written last); `gs://`
objects contribute generation, size and md5 from one metadata request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from state_core.config.experiment import load_experiment
from state_core.errors import DataError

_EDGE_BYTES = 64 * 1024


def _edges_hash(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE_BYTES))
        if size > 2 * _EDGE_BYTES:
            handle.seek(size - _EDGE_BYTES)
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()[:16]


def _file_identity(uri: str) -> str:
    from state_core.storage import gcs_client, is_gcs, split_gcs_uri

    if is_gcs(uri):
        bucket, name = split_gcs_uri(uri)
        blob = gcs_client().bucket(bucket).get_blob(name)
        return f"{uri}|missing" if blob is None else f"{uri}|{blob.generation}|{blob.size}|{blob.md5_hash}"
    path = Path(uri)
    stat = path.stat()
    return f"{uri}|{stat.st_size}|{stat.st_mtime_ns}|{_edges_hash(path, stat.st_size)}"


def experiment_fingerprint(toml_uri: str | Path) -> str:
    """sha256 over the TOML text and the identity of every data file it names (local or gs:// TOML)."""
    from state_core.storage import list_files, localize

    toml_path = localize(str(toml_uri))
    experiment = load_experiment(toml_path)
    parts = [toml_path.read_text(encoding="utf-8")]
    for name in sorted(experiment.datasets):
        parts += [_file_identity(f) for f in list_files(experiment.datasets[name])]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def require_fingerprint(toml_uri: str | Path, expected: str) -> None:
    """DataError when the data changed after the run computed `expected` (it would train on a mix)."""
    if not expected:
        raise DataError(f"{toml_uri}: no data fingerprint given; run the pipeline's fingerprint step first")
    now = experiment_fingerprint(toml_uri)
    if now != expected:
        raise DataError(
            f"{toml_uri}: the data changed while this run was going (fingerprint {expected[:12]} at the start, "
            f"{now[:12]} now); start a new run once the upload has finished"
        )


def differs_from_serving(fingerprint: str, model_repository: str, model_name: str) -> bool:
    """True unless the serving model's publish record carries exactly this data fingerprint."""
    from state_core.pipeline_ops.publish_record import serving_record

    record = serving_record(model_repository, model_name)
    return record is None or record.data_fingerprint != fingerprint


def data_changed_since_serving(toml_uri: str | Path, model_repository: str, model_name: str) -> bool:
    """`differs_from_serving` for the experiment's current data."""
    return differs_from_serving(experiment_fingerprint(toml_uri), model_repository, model_name)
