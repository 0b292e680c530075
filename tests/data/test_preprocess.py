"""preprocess_train (median normalisation, log1p, HVGs) and preprocess_infer (per-cell-type control template)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from state_core.data.preprocess import (
    build_control_template,
    control_template_sources,
    preprocess_infer,
    preprocess_train,
    preprocess_train_adata,
)
from state_core.data.synth import SynthSpec, make_synthetic_adata
from state_core.errors import DataError

K = 40


@pytest.fixture
def counts_file(tmp_path, synth_adata):
    path = tmp_path / "counts.h5ad"
    synth_adata.write_h5ad(path)
    return path


@pytest.fixture
def trained_view(synth_adata) -> ad.AnnData:
    return preprocess_train_adata(synth_adata, num_hvgs=K)


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def test_cells_are_normalised_to_the_median_library_size(synth_adata, trained_view):
    raw_totals = np.asarray(synth_adata.X.sum(axis=1)).ravel()
    normalised_totals = np.expm1(_dense(trained_view.X).astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(normalised_totals, np.median(raw_totals), rtol=1e-4)


def test_hvgs_are_stored_in_obsm_var_and_uns(trained_view):
    flag = trained_view.var["highly_variable"].to_numpy()
    assert flag.sum() == K
    names = list(trained_view.var_names[flag])
    assert list(trained_view.uns["hvg_names"]) == names
    hvg = trained_view.obsm["X_hvg"]
    assert isinstance(hvg, np.ndarray) and hvg.dtype == np.float32 and hvg.shape == (trained_view.n_obs, K)
    np.testing.assert_array_equal(hvg, _dense(trained_view.X[:, flag]))


def test_raw_counts_kept_and_log1p_recorded(synth_adata, trained_view):
    assert (trained_view.layers["counts"] != synth_adata.X).nnz == 0
    assert "log1p" in trained_view.uns
    assert (synth_adata.X != synth_adata.X.astype(np.int64)).nnz == 0  # the input was not modified


def test_dense_and_sparse_input_give_the_same_result(synth_adata, trained_view):
    dense = synth_adata.copy()
    dense.X = dense.X.toarray()
    result = preprocess_train_adata(dense, num_hvgs=K)
    assert isinstance(result.X, np.ndarray)
    np.testing.assert_allclose(result.X, trained_view.X.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(result.uns["hvg_names"], trained_view.uns["hvg_names"])


def test_hvg_choice_matches_scanpy_seurat_flavour(synth_adata, trained_view):
    sc = pytest.importorskip("scanpy")
    reference = synth_adata.copy()
    sc.pp.normalize_total(reference)
    sc.pp.log1p(reference)
    sc.pp.highly_variable_genes(reference, n_top_genes=K, flavor="seurat")
    assert set(reference.var_names[reference.var["highly_variable"]]) == set(trained_view.uns["hvg_names"])


def test_preprocess_train_writes_file_atomically(tmp_path, counts_file):
    out = preprocess_train(counts_file, tmp_path / "out" / "train.h5ad", num_hvgs=K)
    assert out == tmp_path / "out" / "train.h5ad"
    assert [p.name for p in out.parent.iterdir()] == ["train.h5ad"]  # no temp files left behind
    written = ad.read_h5ad(out)
    assert written.obsm["X_hvg"].shape[1] == K and "counts" in written.layers


def test_already_normalised_input_is_refused(tmp_path, counts_file):
    once = preprocess_train(counts_file, tmp_path / "once.h5ad", num_hvgs=K)
    with pytest.raises(DataError, match="already.*--already-normalized"):
        preprocess_train(once, tmp_path / "twice.h5ad", num_hvgs=K)
    assert not (tmp_path / "twice.h5ad").exists()


def test_non_integer_input_is_refused(synth_adata):
    synth_adata.X = synth_adata.X * 0.5
    with pytest.raises(DataError, match="non-integer"):
        preprocess_train_adata(synth_adata, num_hvgs=K)


def test_already_normalized_flag_skips_normalisation(trained_view):
    again = preprocess_train_adata(trained_view, num_hvgs=10, already_normalized=True)
    np.testing.assert_array_equal(again.X.toarray(), trained_view.X.toarray())
    assert again.obsm["X_hvg"].shape[1] == 10


@pytest.mark.parametrize("bad", [0, 10_000, 2.5])
def test_bad_num_hvgs(synth_adata, bad):
    with pytest.raises(DataError, match="num_hvgs"):
        preprocess_train_adata(synth_adata, num_hvgs=bad)


def test_missing_input_file(tmp_path):
    with pytest.raises(DataError, match="no such h5ad"):
        preprocess_train(tmp_path / "missing.h5ad", tmp_path / "out.h5ad", num_hvgs=K)


# ---------------------------------------------------------------------------------------------------
# preprocess_infer


@pytest.fixture
def infer_input(synth_spec, trained_view) -> ad.AnnData:
    adata = trained_view.copy()
    adata.obsm["X_state"] = np.random.default_rng(3).normal(size=(adata.n_obs, 8)).astype(np.float32)
    return adata


def _template(adata: ad.AnnData, spec: SynthSpec, seed: int = 0, batch_col: str | None = None) -> ad.AnnData:
    return build_control_template(adata, spec.control_pert, spec.pert_col, spec.cell_type_key, seed, batch_col)


def _source_rows(original: ad.AnnData, template: ad.AnnData) -> np.ndarray:
    """Recover which original row each template row came from, via the (unique) X_state rows."""
    lookup = {row.tobytes(): i for i, row in enumerate(original.obsm["X_state"])}
    return np.array([lookup[row.tobytes()] for row in template.obsm["X_state"]])


def test_template_uses_controls_of_the_same_cell_type(synth_spec, infer_input):
    template = _template(infer_input, synth_spec)
    sources = _source_rows(infer_input, template)
    obs = infer_input.obs
    is_control = (obs[synth_spec.pert_col] == synth_spec.control_pert).to_numpy()
    assert np.array_equal(sources[is_control], np.flatnonzero(is_control))  # controls keep their own rows
    assert is_control[sources].all()
    cell_types = obs[synth_spec.cell_type_key].to_numpy()
    assert np.array_equal(cell_types[sources], cell_types)


def test_template_replaces_x_obsm_and_layers_together(synth_spec, infer_input):
    template = _template(infer_input, synth_spec)
    sources = _source_rows(infer_input, template)
    np.testing.assert_array_equal(template.X.toarray(), infer_input.X[sources].toarray())
    np.testing.assert_array_equal(template.obsm["X_hvg"], infer_input.obsm["X_hvg"][sources])
    np.testing.assert_array_equal(template.layers["counts"].toarray(), infer_input.layers["counts"][sources].toarray())
    assert template.obs.equals(infer_input.obs)  # labels are kept


def test_template_respects_batch_when_asked(synth_spec, infer_input):
    template = _template(infer_input, synth_spec, batch_col=synth_spec.batch_col)
    sources = _source_rows(infer_input, template)
    batches = infer_input.obs[synth_spec.batch_col].to_numpy()
    assert np.array_equal(batches[sources], batches)


def test_template_is_seeded(synth_spec, infer_input):
    args = (synth_spec.control_pert, synth_spec.pert_col, synth_spec.cell_type_key)
    first = control_template_sources(infer_input, *args, seed=5)
    assert np.array_equal(first, control_template_sources(infer_input, *args, seed=5))
    assert not np.array_equal(first, control_template_sources(infer_input, *args, seed=6))


def test_preprocess_infer_writes_file(tmp_path, synth_spec, infer_input):
    src = tmp_path / "in.h5ad"
    infer_input.write_h5ad(src)
    out = preprocess_infer(
        src, tmp_path / "template.h5ad", synth_spec.control_pert, synth_spec.pert_col, synth_spec.cell_type_key, seed=1
    )
    written = ad.read_h5ad(out)
    assert written.uns["control_template"]["seed"] == 1
    sources = _source_rows(infer_input, written)
    is_control = (infer_input.obs[synth_spec.pert_col] == synth_spec.control_pert).to_numpy()
    assert is_control[sources].all()


def test_cell_type_without_controls_is_an_error():
    spec = SynthSpec(n_cells=300, n_genes=30, n_perturbations=3, n_cell_types_without_controls=1)
    adata = make_synthetic_adata(spec)
    with pytest.raises(DataError, match=spec.cell_types[-1]):
        build_control_template(adata, spec.control_pert, spec.pert_col, spec.cell_type_key)


def test_unknown_control_label_is_an_error(synth_spec, synth_adata):
    with pytest.raises(DataError, match="'DMSO'.*--control_condition"):
        build_control_template(synth_adata, "DMSO", synth_spec.pert_col, synth_spec.cell_type_key)


def test_missing_column_lists_columns(synth_spec, synth_adata):
    with pytest.raises(DataError, match="'celltype'.*cell_type"):
        build_control_template(synth_adata, synth_spec.control_pert, synth_spec.pert_col, "celltype")
