"""Atomic file writes: a temporary file next to the target, renamed onto it only when writing succeeded.

So a failed or killed step never leaves a half-written artifact. The final file gets the usual
permissions (0666 minus the umask): `mkstemp` creates 0600 files, which a serving container running as
another user could not read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    `suffix` lets writers that look at the extension (e.g. `.h5ad`, `.npy`) see the one they expect.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_h5ad_atomic(adata, path: str | Path) -> Path:  # noqa: ANN001 - an AnnData (anndata not imported here)
    """`adata.write_h5ad` through a temp file, so a failure never leaves a half-written .h5ad."""
    with atomic_path(path, suffix=".tmp.h5ad") as tmp:
        adata.write_h5ad(tmp)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
