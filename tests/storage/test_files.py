"""Listing and transfers for local paths and gs:// URIs (the latter against a real emulator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from state_core.errors import DataError
from state_core.storage import (
    download,
    download_tree,
    exists,
    expand_braces,
    gcs_client,
    list_files,
    localize,
    upload,
    upload_tree,
)


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ["a/k562.h5ad", "a/rpe1.h5", "a/notes.txt", "a/sub/deep.h5ad", "b/jurkat.h5ad", "c/hepg2.h5ad"]:
        _touch(tmp_path / rel)
    return tmp_path


def test_expand_braces_nested() -> None:
    assert expand_braces("d/{a,b{1,2}}/*.h5") == ["d/a/*.h5", "d/b1/*.h5", "d/b2/*.h5"]
    with pytest.raises(DataError, match="unbalanced"):
        expand_braces("d/{a,b/*.h5")


def test_local_dir_lists_data_files_not_recursive(tree: Path) -> None:
    assert list_files(str(tree / "a")) == [str(tree / "a/k562.h5ad"), str(tree / "a/rpe1.h5")]


def test_local_file_and_missing_path(tree: Path) -> None:
    assert list_files(str(tree / "b/jurkat.h5ad")) == [str(tree / "b/jurkat.h5ad")]
    assert list_files(str(tree / "nowhere")) == []


def test_local_glob_with_braces(tree: Path) -> None:
    assert list_files(str(tree / "{b,c}/*.h5ad")) == [str(tree / "b/jurkat.h5ad"), str(tree / "c/hepg2.h5ad")]


def test_local_glob_matching_folders_lists_their_files(tree: Path) -> None:
    assert list_files(str(tree / "[bc]")) == [str(tree / "b/jurkat.h5ad"), str(tree / "c/hepg2.h5ad")]


def test_local_transfer_round_trip(tree: Path, tmp_path: Path) -> None:
    upload(tree / "a/k562.h5ad", str(tmp_path / "out/copy.h5ad"))
    assert (tmp_path / "out/copy.h5ad").read_text() == "x"
    assert localize(str(tree / "a/k562.h5ad"), tmp_path / "cache") == tree / "a/k562.h5ad"


def _fill_bucket(bucket: str, tmp_path: Path) -> None:
    source = _touch(tmp_path / "payload.h5ad", "payload")
    for name in [
        "ds/k562.h5ad",
        "ds/rpe1.h5",
        "ds/readme.txt",
        "ds/sub/deep.h5ad",
        "other/jurkat.h5ad",
        "more/hepg2.h5ad",
    ]:
        upload(source, f"gs://{bucket}/{name}")


def test_gcs_listing_forms(gcs_bucket: str, tmp_path: Path) -> None:
    _fill_bucket(gcs_bucket, tmp_path)
    root = f"gs://{gcs_bucket}"
    assert list_files(f"{root}/ds/") == [f"{root}/ds/k562.h5ad", f"{root}/ds/rpe1.h5"]
    assert list_files(f"{root}/ds") == [f"{root}/ds/k562.h5ad", f"{root}/ds/rpe1.h5"]
    assert list_files(f"{root}/ds/*.h5ad") == [f"{root}/ds/k562.h5ad"]
    assert list_files(f"{root}/ds/k562.h5ad") == [f"{root}/ds/k562.h5ad"]
    assert list_files(f"{root}/{{other,more}}/*.h5ad") == [f"{root}/more/hepg2.h5ad", f"{root}/other/jurkat.h5ad"]
    assert list_files(f"{root}/missing/") == []


def test_gcs_exists_download_and_localize_once(gcs_bucket: str, tmp_path: Path) -> None:
    _fill_bucket(gcs_bucket, tmp_path)
    uri = f"gs://{gcs_bucket}/ds/k562.h5ad"
    assert exists(uri) and exists(f"gs://{gcs_bucket}/ds") and not exists(f"gs://{gcs_bucket}/nope.h5ad")
    assert download(uri, tmp_path / "dl/k.h5ad").read_text() == "payload"
    first = localize(uri, tmp_path / "cache")
    assert first.read_text() == "payload"
    first.write_text("payload")  # same size: served from cache, not fetched again
    mtime = first.stat().st_mtime_ns
    assert localize(uri, tmp_path / "cache") == first and first.stat().st_mtime_ns == mtime


def test_localize_refetches_changed_object(gcs_bucket: str, tmp_path: Path) -> None:
    uri = f"gs://{gcs_bucket}/x.h5ad"
    upload(_touch(tmp_path / "v1.h5ad", "one"), uri)
    first = localize(uri, tmp_path / "cache")
    upload(_touch(tmp_path / "v2.h5ad", "second"), uri)
    second = localize(uri, tmp_path / "cache")
    assert first != second and second.read_text() == "second"


def test_gcs_tree_round_trip(gcs_bucket: str, tmp_path: Path) -> None:
    _touch(tmp_path / "run/config.yaml", "a: 1")
    _touch(tmp_path / "run/checkpoints/final.ckpt", "weights")
    written = upload_tree(tmp_path / "run", f"gs://{gcs_bucket}/runs/r1")
    assert written == [f"gs://{gcs_bucket}/runs/r1/checkpoints/final.ckpt", f"gs://{gcs_bucket}/runs/r1/config.yaml"]
    paths = download_tree(f"gs://{gcs_bucket}/runs/r1/", tmp_path / "back")
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in paths) == [
        "checkpoints/final.ckpt",
        "config.yaml",
    ]
    assert (tmp_path / "back/checkpoints/final.ckpt").read_text() == "weights"


def test_missing_object_is_a_data_error(gcs_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        download(f"gs://{gcs_bucket}/absent.h5ad", tmp_path / "a.h5ad")
    assert not (tmp_path / "a.h5ad").exists() and not list(tmp_path.iterdir())


def test_client_uses_emulator(gcs_bucket: str) -> None:
    assert gcs_bucket in [b.name for b in gcs_client().list_buckets()]
