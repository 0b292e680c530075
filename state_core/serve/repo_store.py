"""File operations on a model repository that is a local folder or a `gs://` prefix.

Only what publishing needs beyond `state_core.storage`: list the numbered version folders of a model,
put a staged version folder in place, write one small text file atomically, delete a version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from state_core.atomic import atomic_write_text
from state_core.errors import ServingError
from state_core.storage import gcs_client, is_gcs, split_gcs_uri, upload_tree


@dataclass(frozen=True)
class RepositoryStore:
    """A model repository root: a local folder or `gs://bucket/prefix`."""

    root: str

    @property
    def remote(self) -> bool:
        return is_gcs(self.root)

    def uri(self, *parts: str | int) -> str:
        tail = "/".join(str(p) for p in parts)
        return f"{self.root.rstrip('/')}/{tail}" if self.remote else str(Path(self.root, tail))

    def _bucket_prefix(self, *parts: str | int) -> tuple[str, str]:
        bucket, name = split_gcs_uri(self.uri(*parts))
        return bucket, name.rstrip("/") + "/"

    def versions(self, model: str) -> list[int]:
        """Numbered version folders of `model`, ascending (other names are ignored, as Triton does)."""
        if self.remote:
            bucket, prefix = self._bucket_prefix(model)
            names = {b.name[len(prefix) :].split("/", 1)[0] for b in gcs_client().list_blobs(bucket, prefix=prefix)}
        else:
            folder = Path(self.uri(model))
            names = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
        return sorted(int(n) for n in names if n.isdigit())

    def read_text(self, *parts: str | int) -> str | None:
        if self.remote:
            bucket, name = split_gcs_uri(self.uri(*parts))
            blob = gcs_client().bucket(bucket).get_blob(name)
            return None if blob is None else blob.download_as_text()
        path = Path(self.uri(*parts))
        return path.read_text() if path.is_file() else None

    def put_version(self, model: str, version: int, staged: Path) -> None:
        """Place the staged folder as `<model>/<version>`; locally one rename, so never half there."""
        if self.remote:
            upload_tree(staged, self.uri(model, version))
            return
        target = Path(self.uri(model, version))
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=target.parent))
        try:
            shutil.copytree(staged, scratch, dirs_exist_ok=True)
            os.rename(scratch, target)  # fails if another publisher took this number first
        except OSError as err:
            raise ServingError(
                f"{target}: cannot publish version {version} ({err}); was another publish running? Retry the publish"
            ) from err
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def write_text(self, text: str, *parts: str | int) -> None:
        """Write a small file in one step (a GCS object appears whole; locally temp file + rename)."""
        if self.remote:
            bucket, name = split_gcs_uri(self.uri(*parts))
            gcs_client().bucket(bucket).blob(name).upload_from_string(text, content_type="text/plain")
            return
        atomic_write_text(Path(self.uri(*parts)), text)

    def remove_version(self, model: str, version: int) -> None:
        if self.remote:
            bucket, prefix = self._bucket_prefix(model, version)
            client = gcs_client()
            for blob in list(client.list_blobs(bucket, prefix=prefix)):
                blob.delete()
        else:
            shutil.rmtree(self.uri(model, version), ignore_errors=True)
