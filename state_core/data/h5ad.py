"""Read obs/var labels from AnnData `.h5ad` / `.h5` files with h5py, without loading the matrix.

Files follow the AnnData >= 0.8 HDF5 encoding. An obs/var column may be stored as
  * a categorical group (`categories` + `codes`; code -1 = missing),
  * a nullable group (`values` + `mask`; masked rows become code -1),
  * a plain dataset of strings, bytes, numbers or booleans.
Every form is normalised to `Labels(categories, codes)`. Plain values become their string form
(`1` -> "1"), and their categories are the sorted unique values, so the order is stable.
The dataframe index is the column named by the group's `_index` attribute (AnnData writes it
when the index has a name), falling back to the `_index` dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from state_core.errors import DataError

MISSING_CODE = -1


@dataclass(frozen=True, eq=False)
class Labels:
    """A label column as categories plus one int32 code per row (-1 = missing value)."""

    categories: np.ndarray  # [K] str
    codes: np.ndarray  # [N] int32

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def code_of(self, label: str) -> int:
        """Code of `label`, or -1 when it is not a category."""
        hits = np.flatnonzero(self.categories == label)
        return int(hits[0]) if hits.size else MISSING_CODE

    def values(self) -> np.ndarray:
        """Per-row label strings ("" for missing values)."""
        padded = np.append(self.categories.astype(str), "")
        return padded[self.codes]


def open_h5(path: str | Path) -> h5py.File:
    """Open an h5ad/h5 file read-only; a missing or unreadable file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (dataset paths come from the experiment TOML)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5/h5ad file ({err})") from err


def _dataframe(file: h5py.File, name: str) -> h5py.Group:
    node = file.get(name)
    if not isinstance(node, h5py.Group):
        raise DataError(
            f"{file.filename}: no '{name}' dataframe group; write the file with anndata >= 0.8 "
            "(adata.write_h5ad) so obs/var are stored as groups"
        )
    return node


def _index_name(frame: h5py.Group) -> str:
    name = frame.attrs.get("_index", "_index")
    return name.decode() if isinstance(name, bytes) else str(name)


def _columns(frame: h5py.Group) -> list[str]:
    index = _index_name(frame)
    order = frame.attrs.get("column-order")
    if order is not None and len(order) > 0:
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.atleast_1d(order)]
    else:
        names = sorted(frame.keys())
    return [c for c in names if c != index and c != "__categories"]


def _decode_strings(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr(errors="replace")[()], dtype=str)
    raw = dataset[()]
    if raw.dtype.kind == "S":
        return np.char.decode(raw, "utf-8", errors="replace").astype(str)
    return raw


def _labels_from_values(values: np.ndarray, missing: np.ndarray | None = None) -> Labels:
    values = np.atleast_1d(values)
    if values.dtype.kind == "O":
        values = values.astype(str)
    keep = np.ones(values.shape[0], dtype=bool) if missing is None else ~missing
    # unique over the typed values so numbers sort numerically, then stringify
    uniques, inverse = np.unique(values[keep], return_inverse=True)
    codes = np.full(values.shape[0], MISSING_CODE, dtype=np.int32)
    codes[keep] = inverse.astype(np.int32)
    return Labels(categories=np.asarray([str(u) for u in uniques.tolist()], dtype=str), codes=codes)


def _read_labels(frame: h5py.Group, column: str) -> Labels:
    node = frame[column]
    if isinstance(node, h5py.Group):
        if "categories" in node and "codes" in node:
            categories = _decode_strings(node["categories"])
            categories = np.asarray([str(c) for c in np.atleast_1d(categories).tolist()], dtype=str)
            return Labels(categories=categories, codes=node["codes"][()].astype(np.int32))
        if "values" in node and "mask" in node:
            return _labels_from_values(_decode_strings(node["values"]), node["mask"][()].astype(bool))
        raise DataError(
            f"{frame.file.filename}: {frame.name}/{column} is a group of unknown encoding "
            f"{dict(node.attrs).get('encoding-type', '?')!r}; store it as a categorical or string column"
        )
    return _labels_from_values(_decode_strings(node))


def _require_column(frame: h5py.Group, column: str) -> None:
    if column not in frame:
        available = ", ".join(repr(c) for c in _columns(frame)) or "(none)"
        raise DataError(
            f"{frame.file.filename}: column {column!r} not found in {frame.name.strip('/')}; "
            f"available columns: {available}"
        )


def read_obs_labels(path: str | Path, column: str) -> Labels:
    """Labels of obs column `column` (categorical, nullable or plain)."""
    with open_h5(path) as file:
        frame = _dataframe(file, "obs")
        _require_column(frame, column)
        return _read_labels(frame, column)


def _read_index(frame: h5py.Group) -> list[str]:
    name = _index_name(frame)
    if name not in frame:
        raise DataError(f"{frame.file.filename}: {frame.name} has no index dataset {name!r}")
    return _read_labels(frame, name).values().tolist()


def read_obs_names(path: str | Path) -> list[str]:
    """The obs index (cell barcodes) as strings."""
    with open_h5(path) as file:
        return _read_index(_dataframe(file, "obs"))


def read_var_names(path: str | Path, column: str | None = None) -> list[str]:
    """Gene names: the var index, or var column `column` when given."""
    with open_h5(path) as file:
        frame = _dataframe(file, "var")
        if column is None:
            return _read_index(frame)
        _require_column(frame, column)
        return _read_labels(frame, column).values().tolist()


def n_obs(path: str | Path) -> int:
    """Number of cells (rows of obs)."""
    with open_h5(path) as file:
        frame = _dataframe(file, "obs")
        name = _index_name(frame)
        if name in frame:
            node = frame[name]
            return int(node["codes"].shape[0] if isinstance(node, h5py.Group) else node.shape[0])
        raise DataError(f"{path}: obs has no index dataset {name!r}")


def obs_columns(path: str | Path) -> list[str]:
    """Names of the obs columns (the index excluded), in the file's column order."""
    with open_h5(path) as file:
        return _columns(_dataframe(file, "obs"))


def read_h5ad_file(path: str | Path, what: str = "input"):  # noqa: ANN201 - anndata.AnnData (imported lazily)
    """`anndata.read_h5ad` with one clear DataError for a missing, unreadable, truncated, foreign or empty file."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: {what} file not found; check the path")
    if not path.is_file():
        raise DataError(f"{path}: {what} is a folder, not an .h5ad file")
    try:
        with open(path, "rb") as handle:
            signature = handle.read(8)
    except OSError as err:
        raise DataError(f"{path}: cannot read the {what} file ({err.strerror or err}); fix its permissions") from None
    if signature != b"\x89HDF\r\n\x1a\n":
        kind = "an empty file" if not signature else "not an HDF5 file"
        raise DataError(f"{path}: {kind}, so not an .h5ad; write it with `adata.write_h5ad(path)`")
    try:
        adata = ad.read_h5ad(path)
    except Exception as err:  # noqa: BLE001 - h5py/anndata raise many types for damaged files
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"{path}: damaged or truncated .h5ad ({first[:200]}); re-write it with `adata.write_h5ad(path)`"
        ) from None
    if adata.n_obs == 0:
        raise DataError(f"{path}: has 0 cells; give a file with cells")
    return adata
