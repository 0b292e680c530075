"""The record kept next to each published model version: its metrics and where it came from.

Layout, inside a Triton model repository (local path or `gs://`):

    <repository>/<model_name>/<version>/publish_record.json

Triton only loads the model file of a version folder, so the record rides along unseen by the server, and
the promotion gate of the next run reads the serving model's metrics from the version `config.pbtxt` serves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from state_core.errors import ArtifactError
from state_core.serve.repo_store import RepositoryStore
from state_core.serve.repository import served_versions
from state_core.serve.triton_config import CONFIG_FILE

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
            raise ArtifactError(
                f"{where}: not a valid publish record ({err!r}); delete it or republish that model version"
            ) from err


def serving_version(repository: str, model_name: str) -> int:
    """The version Triton serves: the one `config.pbtxt` pins (publish and rollback pin exactly one), else
    the highest version folder as Triton's default `latest` policy would; 0 when nothing is published."""
    store = RepositoryStore(repository)
    pinned = served_versions(store.read_text(model_name, CONFIG_FILE))  # parsed as a ModelConfig, not a regex
    if pinned:
        return max(pinned)
    versions = store.versions(model_name)
    return versions[-1] if versions else 0


def serving_record(repository: str, model_name: str) -> PublishRecord | None:
    """The record of the served version; None when nothing is published yet."""
    version = serving_version(repository, model_name)
    if version == 0:
        return None
    store = RepositoryStore(repository)
    text = store.read_text(model_name, version, RECORD_NAME)
    if text is None:
        # A version published by hand, without a record: serving, but with unknown metrics.
        return PublishRecord(model_name=model_name, version=version, metrics={})
    return PublishRecord.from_json(text, store.uri(model_name, version, RECORD_NAME))


def write_record(repository: str, record: PublishRecord) -> str:
    """Write the record into its version folder (which must exist); returns its URI."""
    store = RepositoryStore(repository)
    if record.version not in store.versions(record.model_name):
        raise ArtifactError(
            f"{store.uri(record.model_name, record.version)}: model version folder does not exist; "
            "publish the model before its record"
        )
    store.write_text(record.to_json(), record.model_name, record.version, RECORD_NAME)
    return store.uri(record.model_name, record.version, RECORD_NAME)
