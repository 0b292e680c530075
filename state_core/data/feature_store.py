"""The feature rows one split needs, in store order, ready for one-call batch gathers.

Rows are read once from the h5ad files (coalesced row-run reads) and laid out in the split's store order
(sorted by file, cell type, perturbation, batch), so a cell set is a narrow range of rows. If the store fits
the memory budget it is an in-RAM array; otherwise it is converted once into an uncompressed `.npy` in a
cache folder and opened as a read-only memmap, so resident memory does not grow with data size or epochs
(the OS pages rows in and out). The cache file name hashes the source files (path, size, mtime), the key,
the dtype and the row layout, so a changed input is converted again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from state_core.atomic import atomic_path
from state_core.errors import DataError

log = logging.getLogger(__name__)

STORE_DTYPES = {"float32": np.float32, "float16": np.float16}
_READ_CHUNK_BYTES = 64 * 2**20  # bounds the transient memory of the one-off read


@dataclass(frozen=True, eq=False)
class FileRows:
    """Rows of one file that the split uses, and where each lands in the store."""

    path: str  # local path
    rows: np.ndarray  # [n] sorted int64 rows of the file
    dest: np.ndarray  # [n] store positions


@dataclass(frozen=True, eq=False)
class FeatureStore:
    """Feature rows of one split in store order: `array` is in RAM or a read-only memmap."""

    array: np.ndarray  # [N, D] float32 or float16
    key: str
    streamed: bool  # True = memmap on disk

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    def gather(self, positions: np.ndarray, as_float32: bool = True) -> np.ndarray:
        """Rows at store `positions` [len(positions), D]: one vectorised take.

        `as_float32=False` keeps a float16 store's dtype, so the conversion can happen on the accelerator
        (on CPU it costs about as much as the gather itself)."""
        rows = np.asarray(np.take(self.array, np.asarray(positions, dtype=np.int64).ravel(), axis=0))  # [n, D]
        return rows.astype(np.float32) if as_float32 and rows.dtype != np.float32 else rows


def _fingerprint(sources: Sequence[FileRows], key: str, dtype: str) -> str:
    digest = hashlib.sha256(f"{key}|{dtype}".encode())
    for src in sources:
        stat = Path(src.path).stat()
        digest.update(f"|{Path(src.path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        digest.update(np.ascontiguousarray(src.rows, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(src.dest, dtype=np.int64).tobytes())
    return digest.hexdigest()[:24]


def _fill(out: np.ndarray, sources: Sequence[FileRows], key: str) -> None:
    from state_core.data.features import open_features

    width = out.shape[1]
    chunk = max(1, _READ_CHUNK_BYTES // max(1, width * 4))
    for src in sources:
        with open_features(src.path, key) as feats:
            if feats.shape[1] != width:
                raise DataError(
                    f"{src.path}: {key} has {feats.shape[1]} columns but other files have {width}; "
                    "every file of a run needs the same features (re-run preprocessing with one gene list)"
                )
            for start in range(0, src.rows.size, chunk):
                block = feats.read_rows(src.rows[start : start + chunk])  # [c, D] float32
                out[src.dest[start : start + chunk]] = block


def _width(sources: Sequence[FileRows], key: str) -> int:
    from state_core.data.features import open_features

    with open_features(sources[0].path, key) as feats:
        return int(feats.shape[1])


def build_feature_store(
    sources: Sequence[FileRows],
    key: str,
    *,
    dtype: str = "float32",
    memory_budget_bytes: int = 8 * 2**30,
    cache_dir: str | os.PathLike | None = None,
) -> FeatureStore:
    """Read matrix `key` ("X" or an obsm key) for the given rows into a store of `dtype`.

    Above `memory_budget_bytes` the store is a memmap under `cache_dir` (default: the state_core cache,
    `$STATE_CACHE_DIR/feature_stores`). Old store files are not deleted automatically.
    """
    if dtype not in STORE_DTYPES:
        raise DataError(f"store dtype {dtype!r} is not supported; use one of {sorted(STORE_DTYPES)}")
    if not sources:
        raise DataError(f"no rows to load for {key}; the split is empty")
    n_rows = int(sum(src.rows.size for src in sources))
    width = _width(sources, key)
    np_dtype = STORE_DTYPES[dtype]
    nbytes = n_rows * width * np.dtype(np_dtype).itemsize
    if nbytes <= memory_budget_bytes:
        array = np.empty((n_rows, width), dtype=np_dtype)  # [N, D]
        _fill(array, sources, key)
        return FeatureStore(array=array, key=key, streamed=False)
    if cache_dir is None:
        from state_core.storage.cache import default_cache_dir

        cache_dir = default_cache_dir() / "feature_stores"
        log.warning(
            "%s: %.1f GiB exceeds the memory budget (%.1f GiB); streaming from an on-disk store in %s",
            key,
            nbytes / 2**30,
            memory_budget_bytes / 2**30,
            cache_dir,
        )
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"store-{key}-{_fingerprint(sources, key, dtype)}.npy"
    if not target.is_file():
        log.info("converting %s rows of %s to an uncompressed store %s (one-off)", n_rows, key, target)
        with atomic_path(target, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np_dtype, shape=(n_rows, width))
            _fill(out, sources, key)
            out.flush()
            del out
    array = np.load(target, mmap_mode="r")
    if array.shape != (n_rows, width) or array.dtype != np_dtype:
        raise DataError(f"{target}: cached store has shape {array.shape} {array.dtype}; delete it to rebuild")
    return FeatureStore(array=array, key=key, streamed=True)
