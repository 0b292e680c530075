"""The record kept next to each published model version: its metrics and where it came from.

Layout, inside a Triton model repository (local path or `gs://`):

    <repository>/<model_name>/<version>/publish_record.json

Triton only loads the model file of a version folder, so the record rides along unseen by the server, and
the promotion gate of the next run reads the serving model's metrics from the highest version.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from state_core.errors import ArtifactError

RECORD_NAME = "publish_record.json"


@dataclass(frozen=True)
class PublishRecord:
    """What a pipeline run published: model version, metrics it was promoted on, inputs it was trained on."""

    model_name: str
    version: int
    metrics: dict[str, float]
    run_uri: str = ""
    data_fingerprint: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> PublishRecord:
        try:
            raw = json.loads(text)
            return cls(
                model_name=str(raw["model_name"]),
                version=int(raw["version"]),
                metrics={str(k): float(v) for k, v in raw["metrics"].items()},
                run_uri=str(raw.get("run_uri", "")),
                data_fingerprint=str(raw.get("data_fingerprint", "")),
                extra={str(k): str(v) for k, v in raw.get("extra", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ArtifactError(f"{where}: not a valid publish record ({err!r}); "
                                "delete it or republish that model version") from err


def _is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _version_folders(repository: str, model_name: str) -> list[int]:
    """Numeric version folders of one model, ascending (Triton ignores every other folder name)."""
    model_uri = _join(repository, model_name)
    if _is_gcs(model_uri):
        from state_core.storage import list_files

        names = {f[len(model_uri) + 1:].split("/", 1)[0] for f in list_files(model_uri + "/**")}
    else:
        root = Path(model_uri)
        names = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    return sorted(int(n) for n in names if n.isdigit() and not (len(n) > 1 and n.startswith("0")))


def _read_text(uri: str) -> str | None:
    if _is_gcs(uri):
        from state_core.storage import download, exists

        if not exists(uri):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / RECORD_NAME
            download(uri, local)
            return local.read_text()
    path = Path(uri)
    return path.read_text() if path.is_file() else None


def latest_version(repository: str, model_name: str) -> int:
    """Highest version number in the repository, 0 when the model has never been published."""
    versions = _version_folders(repository, model_name)
    return versions[-1] if versions else 0


def serving_record(repository: str, model_name: str) -> PublishRecord | None:
    """The record of the version Triton serves (the highest); None when nothing is published yet."""
    version = latest_version(repository, model_name)
    if version == 0:
        return None
    uri = _join(repository, model_name, str(version), RECORD_NAME)
    text = _read_text(uri)
    if text is None:
        # A version published by hand, without a record: treat as serving with unknown metrics.
        return PublishRecord(model_name=model_name, version=version, metrics={})
    return PublishRecord.from_json(text, uri)


def write_record(repository: str, record: PublishRecord) -> str:
    """Write the record into its version folder (which must exist); returns its URI."""
    uri = _join(repository, record.model_name, str(record.version), RECORD_NAME)
    if _is_gcs(uri):
        from state_core.storage import upload

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / RECORD_NAME
            local.write_text(record.to_json())
            upload(local, uri)
        return uri
    path = Path(uri)
    if not path.parent.is_dir():
        raise ArtifactError(f"{path.parent}: model version folder does not exist; publish the model before its record")
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(record.to_json())
    tmp_path.replace(path)
    return uri
