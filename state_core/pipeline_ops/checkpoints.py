"""Durable checkpoints for a preemptible training task.

Open-source KFP uploads a task's output artifacts only after the task succeeds, so checkpoints written
into the output folder die with a preempted pod and a retry starts from step 0. With a checkpoint URI
(`gs://...` or a mounted PVC path) the training run folder is mirrored there while it trains: restored
before training starts, then every changed file is copied up each `interval_s` and once at the end. A
retried task (same inputs, hence the same key) finds `checkpoints/last.ckpt` and resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def durable_key(data_fingerprint: str, model_preset: str, overrides: Sequence[str]) -> str:
    """The folder name under the checkpoint URI: same data and training settings -> same folder."""
    text = json.dumps([data_fingerprint, model_preset, [str(o) for o in overrides]])
    return f"{model_preset}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _join(base: str, relative: str) -> str:
    return base.rstrip("/") + "/" + relative


def restore(uri: str, run_dir: Path) -> bool:
    """Copy a mirrored run folder down into `run_dir`; False when there is none yet."""
    from state_core.storage import download_tree, exists

    if not exists(_join(uri, "checkpoints/last.ckpt")):
        return False
    download_tree(uri, run_dir)
    log.info("restored checkpoints from %s", uri)
    return True


def _sync_up(run_dir: Path, uri: str, seen: dict[str, tuple[int, int]]) -> None:
    from state_core.errors import DataError
    from state_core.storage import upload

    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    # last.ckpt last, so a mirror that holds it also holds the config and split it resumes with
    files.sort(key=lambda p: p.name == "last.ckpt")
    for path in files:
        stat = path.stat()
        relative = path.relative_to(run_dir).as_posix()
        if seen.get(relative) != (stat.st_size, stat.st_mtime_ns):
            try:
                upload(path, _join(uri, relative))
            except (DataError, FileNotFoundError):  # Lightning replaced the file mid-copy; the next pass gets it
                continue
            seen[relative] = (stat.st_size, stat.st_mtime_ns)


@contextmanager
def mirrored(run_dir: Path, uri: str, interval_s: float = 60.0) -> Iterator[None]:
    """Restore `run_dir` from `uri`, mirror it there while the block runs, and sync once more at the end."""
    restore(uri, run_dir)
    seen: dict[str, tuple[int, int]] = {}
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            if run_dir.is_dir():
                _sync_up(run_dir, uri, seen)

    thread = threading.Thread(target=loop, name="checkpoint-mirror", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    _sync_up(run_dir, uri, seen)
