"""Random-access reads of a feature matrix (`X` or an `obsm` key) of an h5ad file with h5py.

Nothing is loaded at open time except the CSR row pointer (one integer per cell) on first use. Rows may be
requested in any order with duplicates: h5py needs increasing, unique selections, so requests are sorted,
de-duplicated and grouped into contiguous blocks (nearby rows share one read), then put back in request
order. Dense `[N, D]` datasets and CSR groups (AnnData's `encoding-type == "csr_matrix"`) are supported;
CSC is refused because a row read would touch the whole matrix.

A `FeatureSource` can be pickled (for DataLoader workers): the file handle is dropped and reopened lazily.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.sparse as sp

from state_core.data.h5ad import open_h5
from state_core.errors import DataError

log = logging.getLogger(__name__)

# Rows closer than this many bytes of wasted reading are fetched in one block rather than two reads.
_MAX_GAP_BYTES = 256 * 1024
_INDEX_SCAN_CHUNK = 1 << 22


def _obsm_keys(file: h5py.File) -> list[str]:
    group = file.get("obsm")
    return sorted(group.keys()) if isinstance(group, h5py.Group) else []


def _locate(file: h5py.File, path: Path, key: str) -> h5py.Dataset | h5py.Group:
    """`"X"` -> `/X`; anything else -> `/obsm/<key>` (an explicit `"obsm/<key>"` also works)."""
    name = key if key == "X" or key.startswith("obsm/") else f"obsm/{key}"
    node = file.get(name)
    if node is None:
        what = "has no X matrix" if key == "X" else f"has no obsm key {key!r}"
        raise DataError(
            f"{path}: {what}; obsm keys in this file: {_obsm_keys(file)}; "
            f'set embed_key to one of them, or "X" for the expression matrix'
        )
    return node


def _encoding(node: h5py.Dataset | h5py.Group) -> str:
    raw = node.attrs.get("encoding-type", "")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _coalesce(rows: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Sorted unique rows -> half-open [start, stop) blocks; rows at most `max_gap` apart share a block."""
    if rows.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) > max_gap + 1)
    starts = np.concatenate([[rows[0]], rows[breaks + 1]])
    stops = np.concatenate([rows[breaks], [rows[-1]]]) + 1
    return list(zip(starts.tolist(), stops.tolist()))


class FeatureSource:
    """A 2-D float feature matrix inside an h5ad file, read by rows. Use as a context manager or `close()`."""

    def __init__(self, path: str | Path, key: str):
        self.path = Path(path)
        self.key = key
        self._file: h5py.File | None = None
        self._indptr: np.ndarray | None = None
        try:
            node = _locate(self._handle(), self.path, key)
            self._is_csr = isinstance(node, h5py.Group)
            self.shape, self.dtype = self._inspect_csr(node) if self._is_csr else self._inspect_dense(node)
        except Exception:
            self.close()
            raise

    # -- opening and inspecting -----------------------------------------------------------------------

    def _handle(self) -> h5py.File:
        if self._file is None or not self._file.id.valid:
            self._file = open_h5(self.path)
        return self._file

    def _node(self) -> h5py.Dataset | h5py.Group:
        return _locate(self._handle(), self.path, self.key)

    def _inspect_dense(self, node: h5py.Dataset) -> tuple[tuple[int, int], np.dtype]:
        if node.ndim not in (1, 2) or not np.issubdtype(node.dtype, np.number):
            raise DataError(
                f"{self.path}: {node.name} is a {node.ndim}-D {node.dtype} dataset; expected a numeric "
                f"[cells, features] matrix"
            )
        if node.compression is not None or node.chunks is not None:
            log.warning(
                "%s: %s is stored %s (chunks %s); random row reads can be ~100x slower than from an "
                "uncompressed file. Rewrite it without compression for training.",
                self.path,
                node.name,
                f"{node.compression}-compressed" if node.compression else "chunked",
                node.chunks,
            )
        shape = (int(node.shape[0]), int(node.shape[1]) if node.ndim == 2 else 1)
        return shape, np.dtype(node.dtype)

    def _inspect_csr(self, group: h5py.Group) -> tuple[tuple[int, int], np.dtype]:
        encoding = _encoding(group)
        if encoding == "csc_matrix":
            raise DataError(
                f"{self.path}: {group.name} is stored as CSC (column-compressed), which cannot be read by rows; "
                f"convert it to CSR, e.g. `adata.X = adata.X.tocsr(); adata.write_h5ad(path)`"
            )
        if encoding not in ("csr_matrix", "") or not {"data", "indices", "indptr"} <= set(group.keys()):
            raise DataError(
                f"{self.path}: {group.name} is a group with encoding {encoding or 'none'!r}; expected a dense "
                f"matrix or a CSR sparse matrix (data/indices/indptr)"
            )
        data = group["data"]
        if data.compression is not None:
            log.warning(
                "%s: %s/data is %s-compressed; random row reads decompress whole chunks and are much slower. "
                "Rewrite it without compression for training.",
                self.path,
                group.name,
                data.compression,
            )
        n_rows = int(group["indptr"].shape[0]) - 1
        if "shape" in group.attrs:
            n_cols = int(group.attrs["shape"][1])
        else:  # no shape attr: the width is the largest column index + 1 (scanned in chunks)
            indices, n_cols = group["indices"], 0
            for start in range(0, indices.shape[0], _INDEX_SCAN_CHUNK):
                block = indices[start : start + _INDEX_SCAN_CHUNK]
                n_cols = max(n_cols, int(block.max()) + 1 if block.size else 0)
        return (n_rows, n_cols), np.dtype(data.dtype)

    # -- reading ---------------------------------------------------------------------------------------

    def _check_rows(self, idx: Any) -> np.ndarray:
        rows = np.asarray(idx).ravel()
        if rows.size and not np.issubdtype(rows.dtype, np.integer):
            raise TypeError(f"row indices must be integers, got {rows.dtype}")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.shape[0]):
            bad = rows[(rows < 0) | (rows >= self.shape[0])][0]
            raise IndexError(f"{self.path}:{self.key}: row {bad} out of range [0, {self.shape[0]})")
        return rows

    def read_rows(self, idx: Any) -> np.ndarray:
        """Rows `idx` (any order, duplicates allowed) as float32 `[len(idx), D]` in request order."""
        rows = self._check_rows(idx)
        unique, inverse = np.unique(rows, return_inverse=True)
        if unique.size == 0:
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        block = self._read_csr(unique) if self._is_csr else self._read_dense(unique)  # [U, D]
        return block[inverse]  # [len(idx), D]

    def _read_dense(self, unique: np.ndarray) -> np.ndarray:
        node = self._node()
        row_bytes = max(1, self.shape[1] * self.dtype.itemsize)
        out = np.empty((unique.size, self.shape[1]), dtype=np.float32)  # [U, D]
        filled = 0
        for start, stop in _coalesce(unique, _MAX_GAP_BYTES // row_bytes):
            wanted = unique[filled : filled + np.searchsorted(unique[filled:], stop)]
            block = np.asarray(node[start:stop], dtype=np.float32).reshape(stop - start, -1)
            out[filled : filled + wanted.size] = block[wanted - start]
            filled += wanted.size
        return out

    def _row_pointer(self) -> np.ndarray:
        if self._indptr is None:
            self._indptr = np.asarray(self._node()["indptr"][()], dtype=np.int64)  # [N + 1]
        return self._indptr

    def _read_csr(self, unique: np.ndarray) -> np.ndarray:
        group = self._node()
        data, indices, indptr = group["data"], group["indices"], self._row_pointer()
        nnz_per_row = max(1.0, indptr[-1] / max(1, self.shape[0]))
        max_gap = int(_MAX_GAP_BYTES / (nnz_per_row * (data.dtype.itemsize + indices.dtype.itemsize)))
        out = np.empty((unique.size, self.shape[1]), dtype=np.float32)  # [U, D]
        filled = 0
        for start, stop in _coalesce(unique, max_gap):
            wanted = unique[filled : filled + np.searchsorted(unique[filled:], stop)]
            lo, hi = int(indptr[start]), int(indptr[stop])
            block = sp.csr_matrix(
                (data[lo:hi].astype(np.float32, copy=False), indices[lo:hi], indptr[start : stop + 1] - lo),
                shape=(stop - start, self.shape[1]),
            )
            out[filled : filled + wanted.size] = block[wanted - start].toarray()
            filled += wanted.size
        return out

    def read_all(self) -> np.ndarray:
        """The whole matrix as float32 `[N, D]` (loads it into memory)."""
        if self._is_csr:
            group = self._node()
            matrix = sp.csr_matrix(
                (group["data"][()].astype(np.float32), group["indices"][()], self._row_pointer()), shape=self.shape
            )
            return matrix.toarray()
        return np.asarray(self._node()[()], dtype=np.float32).reshape(self.shape)

    # -- lifecycle ---------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> FeatureSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles cannot cross processes; reopen lazily on first read
        return state

    def __repr__(self) -> str:
        layout = "csr" if self._is_csr else "dense"
        return f"FeatureSource({str(self.path)!r}, key={self.key!r}, shape={self.shape}, {layout}, {self.dtype})"


def open_features(path: str | Path, key: str) -> FeatureSource:
    """Open matrix `key` ("X" or an obsm key such as "X_hvg") of the h5ad file at `path` for row reads."""
    return FeatureSource(path, key)


# Checking for NaN/Inf: every row of small matrices, an evenly spread sample of rows of big ones.
_FINITE_CHECK_VALUES = 1 << 23


def describe_key(key: str) -> str:
    return "X" if key == "X" else f"obsm[{key.removeprefix('obsm/')!r}]"


def nonfinite_message(
    path: str | Path, key: str, rows: np.ndarray | None = None, max_values: int = _FINITE_CHECK_VALUES
) -> str | None:
    """None if `key` of the file holds only finite values in `rows` (all rows if None), else what is wrong.

    Reads at most about `max_values` values: beyond that an evenly spaced sample of rows is checked, so a
    large file costs a bounded read while a contaminated one is still very likely caught.
    """
    with open_features(path, key) as source:
        rows = np.arange(source.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        budget = max(1, max_values // max(1, source.shape[1]))
        checked = rows if rows.size <= budget else rows[np.linspace(0, rows.size - 1, budget).astype(np.int64)]
        bad_values = bad_cells = 0
        for start in range(0, checked.size, 4096):
            block = ~np.isfinite(source.read_rows(checked[start : start + 4096]))  # [n, D]
            bad_values += int(block.sum())
            bad_cells += int(block.any(axis=1).sum())
    if not bad_values:
        return None
    scope = f"{checked.size} cells checked" + (f" (a sample of {rows.size})" if checked.size < rows.size else "")
    return nonfinite_text(f"{path}: {describe_key(key)}", bad_values, bad_cells, scope)


def nonfinite_text(where: str, bad_values: int, bad_cells: int, scope: str) -> str:
    """The message for NaN/Inf found in `where` ("<file>: X"), with how to fix it."""
    return (
        f"{where} has {bad_values} NaN/Inf value{'s' if bad_values != 1 else ''} in {bad_cells} "
        f"cell{'s' if bad_cells != 1 else ''} ({scope}); fix: drop or repair those cells (keep rows where "
        f"np.isfinite(...).all(axis=1)), or re-run preprocessing"
    )
