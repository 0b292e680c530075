"""Expression rows straight from an h5ad with h5py: contiguous blocks (streaming) or single rows.

`X` or `layers/<name>`, dense or CSR. Nothing else of the file is loaded, so a transform over millions of
cells holds one block in memory. The file is opened lazily and re-opened in a new process, so a
DataLoader worker never shares an h5py handle with its parent.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from state_core.errors import DataError


class ExpressionRows:
    def __init__(self, path: str | Path, key: str = "X"):
        self.path = Path(path)
        self.key = key
        self._file: h5py.File | None = None
        self._pid = -1
        node = self._node()
        self.sparse = isinstance(node, h5py.Group)
        if self.sparse:
            encoding = node.attrs.get("encoding-type", "")
            if isinstance(encoding, bytes):
                encoding = encoding.decode()
            if encoding != "csr_matrix":
                raise DataError(
                    f"{self.path}: {key} is stored as {encoding or 'an unknown group'}; only dense or CSR rows can be "
                    f"streamed. Convert it with `adata.X = scipy.sparse.csr_matrix(adata.X)` and write the file again"
                )
            self.shape = tuple(int(s) for s in node.attrs["shape"])
        else:
            self.shape = tuple(int(s) for s in node.shape)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise DataError(f"{self.path} does not exist; check the input path")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise DataError(f"{self.path} is not a readable h5ad/HDF5 file: {err}") from err
            self._pid = os.getpid()
        return self._file

    def _node(self) -> h5py.Group | h5py.Dataset:
        file = self._handle()
        if self.key not in file:
            layers = list(file["layers"].keys()) if "layers" in file else []
            raise DataError(
                f"{self.path} has no {self.key!r}; choose 'X' or one of the layers {['layers/' + n for n in layers]}"
            )
        return file[self.key]

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def read_block(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as dense float32 [n, G]."""
        node = self._node()
        if not self.sparse:
            return np.asarray(node[start:stop], dtype=np.float32)
        indptr = np.asarray(node["indptr"][start : stop + 1], dtype=np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        data = np.asarray(node["data"][lo:hi], dtype=np.float32)
        indices = np.asarray(node["indices"][lo:hi], dtype=np.int64)
        block = sp.csr_matrix((data, indices, indptr - lo), shape=(stop - start, self.shape[1]))
        return block.toarray()

    def read_row(self, index: int) -> np.ndarray:
        return self.read_block(index, index + 1)[0]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "key": self.key, "sparse": self.sparse, "shape": self.shape}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._file, self._pid = None, -1
