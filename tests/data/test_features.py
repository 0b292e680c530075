"""Row reads of X / obsm matrices straight from h5ad files, in any order, equal to the in-memory data."""

from __future__ import annotations

import logging
import pickle

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from state_core.data.features import open_features
from state_core.errors import DataError

# Unsorted, with duplicates, first/last rows and a contiguous run.
REQUEST = np.array([17, 3, 3, 0, 999, 40, 41, 42, 43, 17, 500, 1])


@pytest.fixture
def small_adata(synth_adata) -> ad.AnnData:
    adata = synth_adata[:1000].copy()
    adata.obsm["X_dense"] = np.random.default_rng(0).normal(size=(adata.n_obs, 7)).astype(np.float32)
    adata.obsm["X_sparse"] = sp.csr_matrix(adata.X[:, :30])
    return adata


@pytest.fixture
def csr_file(tmp_path, small_adata):
    path = tmp_path / "csr.h5ad"
    small_adata.write_h5ad(path)
    return path


@pytest.fixture
def dense_file(tmp_path, small_adata):
    adata = small_adata.copy()
    adata.X = adata.X.toarray()
    path = tmp_path / "dense.h5ad"
    adata.write_h5ad(path)
    return path


def test_csr_x_rows_in_request_order(csr_file, small_adata):
    with open_features(csr_file, "X") as source:
        assert source.shape == small_adata.shape
        got = source.read_rows(REQUEST)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, small_adata.X[REQUEST].toarray())


def test_dense_x_rows_in_request_order(dense_file, small_adata):
    with open_features(dense_file, "X") as source:
        got = source.read_rows(REQUEST)
    np.testing.assert_array_equal(got, small_adata.X[REQUEST].toarray())


def test_dense_obsm_rows(csr_file, small_adata):
    with open_features(csr_file, "X_dense") as source:
        assert source.shape == (1000, 7)
        np.testing.assert_array_equal(source.read_rows(REQUEST), small_adata.obsm["X_dense"][REQUEST])


def test_csr_obsm_rows(csr_file, small_adata):
    with open_features(csr_file, "X_sparse") as source:
        assert source.shape == (1000, 30)
        np.testing.assert_array_equal(source.read_rows(REQUEST), small_adata.obsm["X_sparse"][REQUEST].toarray())


def test_random_permutation_matches_memory(csr_file, small_adata):
    order = np.random.default_rng(1).permutation(small_adata.n_obs)
    with open_features(csr_file, "X") as source:
        np.testing.assert_array_equal(source.read_rows(order), small_adata.X[order].toarray())


@pytest.mark.parametrize("key", ["X", "X_dense", "X_sparse"])
def test_read_all_equals_memory(csr_file, small_adata, key):
    expected = small_adata.X if key == "X" else small_adata.obsm[key]
    expected = expected.toarray() if sp.issparse(expected) else expected
    with open_features(csr_file, key) as source:
        np.testing.assert_array_equal(source.read_all(), expected)


def test_empty_request_gives_empty_matrix(csr_file):
    with open_features(csr_file, "X") as source:
        assert source.read_rows([]).shape == (0, source.shape[1])


def test_out_of_range_row_raises(csr_file):
    with open_features(csr_file, "X") as source, pytest.raises(IndexError, match="1000"):
        source.read_rows([0, 1000])


def test_missing_obsm_key_lists_existing_keys(csr_file):
    with pytest.raises(DataError) as err:
        open_features(csr_file, "X_state")
    message = str(err.value)
    assert str(csr_file) in message and "'X_state'" in message and "X_dense" in message and "X_sparse" in message


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_features(tmp_path / "nope.h5ad", "X")


def test_csc_matrix_is_refused_with_conversion_hint(tmp_path, small_adata):
    adata = small_adata.copy()
    adata.X = sp.csc_matrix(adata.X)
    path = tmp_path / "csc.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(DataError, match="CSC.*tocsr"):
        open_features(path, "X")


def test_csr_group_without_shape_attr_infers_width(tmp_path, small_adata):
    path = tmp_path / "plain.h5"
    X = small_adata.X
    with h5py.File(path, "w") as file:
        group = file.create_group("X")
        for name in ("data", "indices", "indptr"):
            group.create_dataset(name, data=getattr(X, name))
    last_used_column = int(X.indices.max())
    with open_features(path, "X") as source:
        assert source.shape == (X.shape[0], last_used_column + 1)
        np.testing.assert_array_equal(source.read_rows(REQUEST), X[REQUEST][:, : last_used_column + 1].toarray())


def test_one_dimensional_dataset_is_a_column(tmp_path):
    path = tmp_path / "vec.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("obsm/score", data=np.arange(5, dtype=np.float64))
    with open_features(path, "score") as source:
        assert source.shape == (5, 1)
        np.testing.assert_array_equal(source.read_rows([4, 0]), [[4.0], [0.0]])


def test_gzip_compressed_dense_warns(tmp_path, small_adata, caplog):
    adata = small_adata.copy()
    adata.X = adata.X.toarray()
    path = tmp_path / "gzip.h5ad"
    adata.write_h5ad(path, compression="gzip")
    with caplog.at_level(logging.WARNING, logger="state_core.data.features"):
        source = open_features(path, "X")
    assert "gzip" in caplog.text and "slower" in caplog.text
    np.testing.assert_array_equal(source.read_rows(REQUEST), adata.X[REQUEST])
    source.close()


def test_pickled_source_reopens_the_file(csr_file, small_adata):
    source = open_features(csr_file, "X")
    clone = pickle.loads(pickle.dumps(source))
    source.close()
    np.testing.assert_array_equal(clone.read_rows(REQUEST), small_adata.X[REQUEST].toarray())
    clone.close()


def test_reads_after_close_reopen(csr_file, small_adata):
    source = open_features(csr_file, "X_dense")
    source.close()
    np.testing.assert_array_equal(source.read_rows([5]), small_adata.obsm["X_dense"][[5]])
    source.close()


@pytest.mark.parametrize("key", ["X", "X_dense", "X_sparse"])
def test_one_read_per_row_when_blocks_are_not_merged(csr_file, small_adata, monkeypatch, key):
    from state_core.data import features

    monkeypatch.setattr(features, "_MAX_GAP_BYTES", 0)  # every non-adjacent row becomes its own block
    expected = small_adata.X if key == "X" else small_adata.obsm[key]
    expected = expected[REQUEST]
    expected = expected.toarray() if sp.issparse(expected) else expected
    with open_features(csr_file, key) as source:
        np.testing.assert_array_equal(source.read_rows(REQUEST), expected)
