"""Label reading from h5ad files with h5py: categorical, plain and nullable columns, named indexes."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

from state_core.data.h5ad import n_obs, obs_columns, read_obs_labels, read_obs_names, read_var_names
from state_core.errors import DataError


def _write(path: Path, obs: pd.DataFrame, var: pd.DataFrame | None = None) -> Path:
    var = var if var is not None else pd.DataFrame(index=[f"g{i}" for i in range(3)])
    adata = ad.AnnData(X=np.zeros((len(obs), len(var)), dtype=np.float32), obs=obs, var=var)
    adata.write_h5ad(path)
    return path


@pytest.fixture
def h5ad_file(tmp_path: Path) -> Path:
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical(["A", "non-targeting", "B", "A"]),
            "gem_group": np.array([3, 1, 3, 2], dtype=np.int64),
            "donor": np.array(["d2", "d1", "d2", "d1"], dtype=object),
            "score": np.array([0.5, 1.5, 0.5, 2.0]),
        },
        index=pd.Index([f"cell{i}" for i in range(4)], name="barcode"),
    )
    return _write(tmp_path / "a.h5ad", obs)


def test_categorical_column_keeps_categories_and_codes(h5ad_file: Path) -> None:
    labels = read_obs_labels(h5ad_file, "gene")
    assert labels.categories.tolist() == ["A", "B", "non-targeting"]
    assert labels.codes.dtype == np.int32
    assert labels.values().tolist() == ["A", "non-targeting", "B", "A"]


def test_numeric_column_becomes_sorted_strings(h5ad_file: Path) -> None:
    labels = read_obs_labels(h5ad_file, "gem_group")
    assert labels.categories.tolist() == ["1", "2", "3"]
    assert labels.values().tolist() == ["3", "1", "3", "2"]


def test_plain_string_dataset_is_read(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        obs = f.create_group("obs")
        obs.attrs["_index"] = "_index"
        obs.create_dataset("_index", data=np.array([b"c0", b"c1", b"c2"]))
        obs.create_dataset("cell_type", data=np.array([b"K562", b"RPE1", b"K562"]))
    labels = read_obs_labels(path, "cell_type")
    assert labels.categories.tolist() == ["K562", "RPE1"]
    assert labels.codes.tolist() == [0, 1, 0]
    assert read_obs_names(path) == ["c0", "c1", "c2"]


def test_missing_categorical_values_get_code_minus_one(tmp_path: Path) -> None:
    obs = pd.DataFrame({"gene": pd.Categorical(["A", None, "A"])}, index=["c0", "c1", "c2"])
    labels = read_obs_labels(_write(tmp_path / "nan.h5ad", obs), "gene")
    assert labels.codes.tolist() == [0, -1, 0]


def test_named_index_is_honoured(h5ad_file: Path) -> None:
    assert read_obs_names(h5ad_file) == ["cell0", "cell1", "cell2", "cell3"]
    assert "barcode" not in obs_columns(h5ad_file)
    assert n_obs(h5ad_file) == 4


def test_obs_columns_in_file_order(h5ad_file: Path) -> None:
    assert obs_columns(h5ad_file) == ["gene", "gem_group", "donor", "score"]


def test_var_names_from_index_and_column(tmp_path: Path) -> None:
    var = pd.DataFrame({"gene_name": ["TP53", "MYC"]}, index=pd.Index(["ENSG1", "ENSG2"], name="gene_id"))
    obs = pd.DataFrame(index=["c0"])
    path = _write(tmp_path / "v.h5ad", obs, var)
    assert read_var_names(path) == ["ENSG1", "ENSG2"]
    assert read_var_names(path, "gene_name") == ["TP53", "MYC"]


def test_missing_column_names_file_and_lists_columns(h5ad_file: Path) -> None:
    with pytest.raises(DataError) as err:
        read_obs_labels(h5ad_file, "target_gene")
    message = str(err.value)
    assert str(h5ad_file) in message and "'target_gene'" in message and "'gene', 'gem_group'" in message


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_obs_labels(tmp_path / "nope.h5ad", "gene")
