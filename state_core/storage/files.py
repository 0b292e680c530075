"""List, test, copy and transfer files that live on local disk or in `gs://` buckets.

Every function takes a local path or a `gs://bucket/name` URI. Writes go to a temporary name in
the destination folder and are renamed into place, so a failed transfer leaves nothing half written.
"""

from __future__ import annotations

import glob
import posixpath
import shutil
from pathlib import Path

from state_core.atomic import atomic_path
from state_core.errors import DataError
from state_core.storage.gcs import gcs_client
from state_core.storage.uris import (
    expand_braces,
    glob_to_regex,
    has_glob,
    is_data_file,
    is_gcs,
    literal_prefix,
    split_gcs_uri,
)


def list_files(uri_or_glob: str) -> list[str]:
    """Data files (`*.h5ad`, `*.h5`) named by a file, a folder (not recursive), or a glob with
    `{a,b}` braces, locally or under `gs://`. Folders matched by a glob contribute their data files.
    Sorted and without repeats; an empty list when nothing matches."""
    patterns = expand_braces(str(uri_or_glob))
    found: set[str] = set()
    for pattern in patterns:
        found.update(_list_gcs(pattern) if is_gcs(pattern) else _list_local(pattern))
    return sorted(found)


def _data_files_in(folder: Path) -> list[str]:
    return [str(p) for p in folder.iterdir() if p.is_file() and is_data_file(p.name)]


def _list_local(pattern: str) -> list[str]:
    path = Path(pattern).expanduser()
    if not has_glob(pattern):
        if path.is_file():
            return [str(path)]
        return _data_files_in(path) if path.is_dir() else []
    found: list[str] = []
    for match in glob.glob(str(path), recursive=True):
        candidate = Path(match)
        if candidate.is_dir():
            found.extend(_data_files_in(candidate))
        elif is_data_file(candidate.name):
            found.append(str(candidate))
    return found


def _list_gcs(pattern: str) -> list[str]:
    bucket, name = split_gcs_uri(pattern)
    client = gcs_client()
    if not has_glob(name):
        if name and is_data_file(name) and client.bucket(bucket).get_blob(name) is not None:
            return [f"gs://{bucket}/{name}"]
        prefix = name.rstrip("/") + "/" if name.rstrip("/") else ""
        return [
            f"gs://{bucket}/{b.name}"
            for b in client.list_blobs(bucket, prefix=prefix, delimiter="/")
            if is_data_file(b.name)
        ]
    regex = glob_to_regex(name.rstrip("/"))
    found = []
    for blob in client.list_blobs(bucket, prefix=literal_prefix(name)):
        if not is_data_file(blob.name):
            continue
        # a blob matches itself, or lies directly inside a matched "folder"
        if regex.match(blob.name) or regex.match(posixpath.dirname(blob.name)):
            found.append(f"gs://{bucket}/{blob.name}")
    return found


def exists(uri: str) -> bool:
    """True for an existing local path, a `gs://` object, or a `gs://` prefix holding objects."""
    if not is_gcs(uri):
        return Path(uri).expanduser().exists()
    bucket, name = split_gcs_uri(uri)
    client = gcs_client()
    if name and client.bucket(bucket).get_blob(name) is not None:
        return True
    prefix = name.rstrip("/") + "/" if name else ""
    return any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1))


def download(uri: str, local_path: str | Path) -> Path:
    """Copy `uri` (gs:// or local) to `local_path`."""
    local_path = Path(local_path)
    with atomic_path(local_path) as tmp:
        if is_gcs(uri):
            bucket, name = split_gcs_uri(uri)
            client = gcs_client()  # checks that the gcs extra is installed
            from google.api_core import exceptions as gcs_errors

            try:
                client.bucket(bucket).blob(name).download_to_filename(str(tmp))
            except gcs_errors.NotFound as err:
                raise DataError(f"{uri}: object not found; check the bucket and path") from err
        else:
            source = Path(uri).expanduser()
            if not source.is_file():
                raise DataError(f"{uri}: file not found")
            shutil.copyfile(source, tmp)
    return local_path


def upload(local: str | Path, uri: str) -> str:
    """Copy the local file `local` to `uri` (gs:// or local)."""
    local = Path(local)
    if not local.is_file():
        raise DataError(f"{local}: file not found; nothing to upload")
    if is_gcs(uri):
        bucket, name = split_gcs_uri(uri)
        if not name or name.endswith("/"):
            raise DataError(f"{uri}: upload target must name an object, not a folder")
        # one request per object: GCS makes the object visible only once the upload completes
        gcs_client().bucket(bucket).blob(name).upload_from_filename(str(local))
    else:
        with atomic_path(Path(uri).expanduser()) as tmp:
            shutil.copyfile(local, tmp)
    return uri


def _join(base: str, relative: str) -> str:
    return base.rstrip("/") + "/" + relative if is_gcs(base) else str(Path(base) / relative)


def upload_tree(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under `local_dir` to `uri/<relative path>`; returns the written URIs."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise DataError(f"{local_dir}: folder not found; nothing to upload")
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    return [upload(p, _join(uri, p.relative_to(local_dir).as_posix())) for p in files]


def download_tree(uri: str, local_dir: str | Path) -> list[Path]:
    """Copy every object under the `uri` prefix (or files under a local folder) into `local_dir`."""
    local_dir = Path(local_dir)
    if is_gcs(uri):
        bucket, name = split_gcs_uri(uri)
        prefix = name.rstrip("/") + "/" if name.rstrip("/") else ""
        names = sorted(b.name for b in gcs_client().list_blobs(bucket, prefix=prefix) if not b.name.endswith("/"))
        relatives = [n[len(prefix) :] for n in names]
    else:
        source = Path(uri).expanduser()
        if not source.is_dir():
            raise DataError(f"{uri}: folder not found")
        relatives = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    if not relatives:
        raise DataError(f"{uri}: no files found under this prefix")
    return [download(_join(uri, rel), local_dir / rel) for rel in relatives]
