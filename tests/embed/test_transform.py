"""`transform_h5ad`: output layout, metadata, determinism, streaming, explicit input kind, failures."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from state_core.embed.transform import transform_h5ad
from state_core.errors import DataError


def embed(model_dir: Path, source: Path, out: Path, **kw) -> np.ndarray:
    transform_h5ad(model_dir, source, out, progress=False, **kw)
    return ad.read_h5ad(out).obsm["X_state"]


def test_transform_writes_x_state_and_meta_and_keeps_the_rest(se_model_dir, se_data, tmp_path):
    out = tmp_path / "out.h5ad"
    summary = transform_h5ad(se_model_dir, se_data["a"], out, progress=False)
    result, source = ad.read_h5ad(out), ad.read_h5ad(se_data["a"])
    assert result.obsm["X_state"].shape == (48, 42) and result.obsm["X_state"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.obsm["X_state"][:, :32], axis=1), 1.0, rtol=1e-5)
    meta = result.uns["X_state_meta"]
    assert meta["model_id"] == "tiny-random" and meta["input_kind"] == "raw" and meta["seed"] == 0
    assert (result.X != source.X).nnz == 0 and list(result.obs.columns) == list(source.obs.columns)
    assert summary.genes_mapped == 40 and not (tmp_path / "out.h5ad.partial").exists()


def test_same_seed_same_embedding_other_seed_differs(se_model_dir, se_data, tmp_path):
    first = embed(se_model_dir, se_data["a"], tmp_path / "1.h5ad", seed=7)
    second = embed(se_model_dir, se_data["a"], tmp_path / "2.h5ad", seed=7)
    other = embed(se_model_dir, se_data["a"], tmp_path / "3.h5ad", seed=8)
    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other).max() > 1e-4


def test_result_does_not_depend_on_streaming_block_size(se_model_dir, se_data, tmp_path):
    small = embed(se_model_dir, se_data["a"], tmp_path / "s.h5ad", batch_size=5)
    large = embed(se_model_dir, se_data["a"], tmp_path / "l.h5ad", batch_size=64)
    np.testing.assert_allclose(small, large, atol=1e-6)


def test_dense_x_gives_the_same_embedding_as_csr(se_model_dir, se_data, tmp_path):
    dense_file = tmp_path / "dense.h5ad"
    adata = ad.read_h5ad(se_data["b"])
    adata.X = adata.X.toarray()
    adata.write_h5ad(dense_file)
    np.testing.assert_allclose(
        embed(se_model_dir, dense_file, tmp_path / "d.h5ad"),
        embed(se_model_dir, se_data["b"], tmp_path / "c.h5ad"),
        atol=1e-6,
    )


def test_log_normalised_x_is_refused_as_raw_and_accepted_as_log1p(se_model_dir, se_data, tmp_path):
    logged = tmp_path / "log.h5ad"
    adata = ad.read_h5ad(se_data["b"])
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    adata.write_h5ad(logged)
    with pytest.raises(DataError, match="--input-kind log1p"):
        transform_h5ad(se_model_dir, logged, tmp_path / "x.h5ad", progress=False)
    assert not (tmp_path / "x.h5ad").exists() and not (tmp_path / "x.h5ad.partial").exists()
    as_log = embed(se_model_dir, logged, tmp_path / "y.h5ad", input_kind="log1p")
    from_counts = embed(se_model_dir, logged, tmp_path / "z.h5ad", layer="counts")
    np.testing.assert_allclose(as_log, from_counts, atol=1e-5)  # raw -> log1p is the model's convention


def test_low_gene_coverage_stops_with_a_hint(se_model_dir, se_data, tmp_path):
    renamed = tmp_path / "ensembl.h5ad"
    adata = ad.read_h5ad(se_data["b"])
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    adata.write_h5ad(renamed)
    with pytest.raises(DataError, match="--gene-column"):
        transform_h5ad(se_model_dir, renamed, tmp_path / "x.h5ad", progress=False)
    out = embed(se_model_dir, renamed, tmp_path / "y.h5ad", gene_column="gene_name")  # symbols kept in var
    assert out.shape == (24, 42)


def test_preprocessed_experiment_file_embeds_from_its_counts_layer(se_model_dir, synth_experiment, tmp_path):
    source = synth_experiment.h5ad_paths[0]  # log-normalised X, raw counts in layers["counts"]
    out = tmp_path / "embedded.h5ad"
    transform_h5ad(se_model_dir, source, out, layer="counts", min_gene_coverage=0.3, progress=False)
    result = ad.read_h5ad(out)
    assert result.obsm["X_state"].shape == (result.n_obs, 42)
    assert "X_hvg" in result.obsm  # the features ST already uses stay in place
