"""A download cache: `gs://` objects are fetched once and reused while they stay unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from state_core.errors import DataError
from state_core.storage.files import download
from state_core.storage.gcs import gcs_client
from state_core.storage.uris import is_gcs, split_gcs_uri


def default_cache_dir() -> Path:
    """`$STATE_CACHE_DIR`, else `$XDG_CACHE_HOME/state_core`, else `~/.cache/state_core`."""
    if os.environ.get("STATE_CACHE_DIR"):
        return Path(os.environ["STATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "state_core"


def localize(uri: str, cache_dir: str | Path | None = None) -> Path:
    """A local path holding `uri`. Local paths pass through unchanged. A gs:// object is downloaded
    into `cache_dir/<key>/<file name>`, where the key hashes the URI with the object's generation,
    size and md5, so a changed object is fetched again and an unchanged one never is."""
    if not is_gcs(uri):
        path = Path(uri).expanduser()
        if not path.exists():
            raise DataError(f"{uri}: file not found")
        return path
    bucket, name = split_gcs_uri(uri)
    blob = gcs_client().bucket(bucket).get_blob(name)
    if blob is None:
        raise DataError(f"{uri}: object not found; check the bucket and path")
    identity = f"{uri}|{blob.generation}|{blob.size}|{blob.md5_hash}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:20]
    target = Path(cache_dir or default_cache_dir()) / key / Path(name).name
    if target.is_file() and target.stat().st_size == blob.size:
        return target
    download(uri, target)
    got = target.stat().st_size
    if blob.size is not None and got != blob.size:
        target.unlink(missing_ok=True)
        raise DataError(f"{uri}: downloaded {got} bytes, expected {blob.size}; retry")
    return target
