"""The synthetic generator: deterministic, and realistic where loaders and models care."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from state_core.data.synth import SynthSpec, make_synthetic_adata, write_synthetic_experiment
from state_core.errors import DataError


def _group_sizes(adata: ad.AnnData, spec: SynthSpec) -> pd.Series:
    return adata.obs.groupby([spec.cell_type_key, spec.pert_col], observed=True).size()


def test_same_spec_gives_identical_data(synth_spec, synth_adata):
    again = make_synthetic_adata(synth_spec)
    assert (synth_adata.X != again.X).nnz == 0
    pd.testing.assert_frame_equal(synth_adata.obs, again.obs)


def test_other_seed_gives_other_data(synth_spec, synth_adata):
    other = make_synthetic_adata(replace(synth_spec, seed=1))
    assert other.shape == synth_adata.shape
    assert (synth_adata.X != other.X).nnz > 0


def test_counts_are_nonnegative_integer_float32_csr(synth_adata):
    X = synth_adata.X
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert X.data.min() >= 0 and np.array_equal(X.data, np.round(X.data))
    assert 0.05 < X.nnz / np.prod(X.shape) < 0.9  # sparse like real data, not empty


def test_dense_option_draws_the_same_counts(synth_spec, synth_adata):
    dense = make_synthetic_adata(replace(synth_spec, sparse=False))
    assert isinstance(dense.X, np.ndarray) and dense.X.dtype == np.float32
    np.testing.assert_array_equal(dense.X, synth_adata.X.toarray())


def test_obs_is_categorical_and_perturbations_are_genes(synth_spec, synth_adata):
    obs = synth_adata.obs
    for column in (synth_spec.pert_col, synth_spec.cell_type_key, synth_spec.batch_col):
        assert isinstance(obs[column].dtype, pd.CategoricalDtype)
    perts = [p for p in obs[synth_spec.pert_col].cat.categories if p != synth_spec.control_pert]
    assert len(perts) == synth_spec.n_perturbations
    assert set(perts) <= set(synth_adata.var_names)
    assert list(synth_adata.var["gene_name"]) == list(synth_adata.var_names)


def test_controls_present_in_every_cell_type_and_batch(synth_spec, synth_adata):
    obs = synth_adata.obs
    controls = obs[obs[synth_spec.pert_col] == synth_spec.control_pert]
    pairs = controls.groupby([synth_spec.cell_type_key, synth_spec.batch_col], observed=True).size()
    assert len(pairs) == synth_spec.n_cell_types * synth_spec.n_batches
    assert pairs.min() >= 2
    fraction = len(controls) / len(obs)
    assert 0.5 * synth_spec.control_fraction < fraction < 2 * synth_spec.control_fraction


def test_group_sizes_are_uneven():
    spec = SynthSpec()  # the default size: 3000 cells, 12 perturbations
    adata = make_synthetic_adata(spec)
    sizes = _group_sizes(adata, spec)
    perturbed = sizes.drop(spec.control_pert, level=1)
    assert perturbed.min() < 64 < perturbed.max()
    assert perturbed.max() >= 4 * perturbed.min()


def test_knockdown_visible_in_target_gene(synth_spec, synth_adata):
    X = synth_adata.X.toarray()
    normalised = X / X.sum(axis=1, keepdims=True)  # library-size corrected
    perts = synth_adata.obs[synth_spec.pert_col].to_numpy()
    control_mean = normalised[perts == synth_spec.control_pert].mean(axis=0)
    for pert in synth_adata.uns["synth"]["perturbations"]:
        gene = synth_adata.var_names.get_loc(pert)
        ratio = normalised[perts == pert, gene].mean() / control_mean[gene]
        assert ratio < 0.5, f"{pert}: target expression ratio {ratio:.2f}"


def test_programme_genes_move_more_than_other_genes(synth_spec, synth_adata):
    X = np.log1p(synth_adata.X.toarray() / synth_adata.X.sum(axis=1).A * 1e3)
    perts = synth_adata.obs[synth_spec.pert_col].to_numpy()
    control_mean = X[perts == synth_spec.control_pert].mean(axis=0)
    programme_genes = np.unique(np.concatenate(list(synth_adata.uns["synth"]["programmes"].values())))
    in_programme = synth_adata.var_names.isin(programme_genes)
    shift = np.stack(
        [np.abs(X[perts == p].mean(axis=0) - control_mean) for p in synth_adata.uns["synth"]["perturbations"]]
    )
    assert shift[:, in_programme].mean() > 2 * shift[:, ~in_programme].mean()


def test_counts_are_overdispersed_like_negative_binomial(synth_spec, synth_adata):
    obs = synth_adata.obs
    first_ct = synth_spec.cell_types[0]
    mask = (obs[synth_spec.pert_col] == synth_spec.control_pert) & (obs[synth_spec.cell_type_key] == first_ct)
    counts = synth_adata.X[mask.to_numpy()].toarray()
    mean, var = counts.mean(axis=0), counts.var(axis=0, ddof=1)
    expressed = mean > 1.0
    assert expressed.sum() >= 10
    assert np.median(var[expressed] / mean[expressed]) > 1.5  # Poisson would give ~1


def test_cell_types_differ_in_baseline(synth_spec, synth_adata):
    X = np.log1p(synth_adata.X.toarray())
    cell_types = synth_adata.obs[synth_spec.cell_type_key].to_numpy()
    means = np.stack([X[cell_types == ct].mean(axis=0) for ct in synth_spec.cell_types])
    assert np.abs(means[0] - means[1]).mean() > 0.1


def test_cell_type_without_controls_option():
    spec = SynthSpec(n_cells=400, n_genes=40, n_perturbations=4, n_cell_types_without_controls=1)
    adata = make_synthetic_adata(spec)
    last = spec.cell_types[-1]
    in_last = adata.obs[spec.cell_type_key] == last
    assert in_last.sum() > 0
    assert (adata.obs.loc[in_last, spec.pert_col] == spec.control_pert).sum() == 0


def test_custom_column_names_are_used():
    spec = SynthSpec(
        n_cells=200,
        n_genes=30,
        n_perturbations=3,
        pert_col="target",
        cell_type_key="ct",
        batch_col="lane",
        control_pert="ctrl",
    )
    adata = make_synthetic_adata(spec)
    assert {"target", "ct", "lane"} <= set(adata.obs.columns)
    assert "ctrl" in adata.obs["target"].cat.categories


@pytest.mark.parametrize(
    "bad", [{"n_perturbations": 0}, {"control_fraction": 1.5}, {"n_genes": 2, "n_perturbations": 5}]
)
def test_invalid_spec_is_a_data_error(bad):
    with pytest.raises(DataError, match="SynthSpec"):
        SynthSpec(**bad)


def test_experiment_files_and_tomls(synth_experiment):
    exp = synth_experiment
    zeroshot = tomllib.loads(exp.zeroshot_toml.read_text())
    dataset_dir = exp.zeroshot_toml.parent / zeroshot["datasets"][exp.dataset_name]
    assert dataset_dir.resolve() == exp.dataset_dir.resolve()
    assert sorted(dataset_dir.glob("*.h5ad")) == exp.h5ad_paths
    assert zeroshot["training"] == {exp.dataset_name: "train"}
    assert zeroshot["zeroshot"] == {
        f"{exp.dataset_name}.{exp.zeroshot_test_cell_type}": "test",
        f"{exp.dataset_name}.{exp.zeroshot_val_cell_type}": "val",
    }
    fewshot = tomllib.loads(exp.fewshot_toml.read_text())
    entry = fewshot["fewshot"][f"{exp.dataset_name}.{exp.fewshot_cell_type}"]
    assert entry == {"val": exp.fewshot_val_perts, "test": exp.fewshot_test_perts}


def test_experiment_h5ad_is_preprocessed(synth_experiment):
    adata = ad.read_h5ad(synth_experiment.h5ad_paths[0])
    assert adata.obsm["X_hvg"].shape == (adata.n_obs, 64)
    assert adata.obsm["X_state"].shape == (adata.n_obs, 16)
    assert "counts" in adata.layers and "log1p" in adata.uns
    perts = set(adata.obs[synth_experiment.spec.pert_col].cat.categories)
    assert set(synth_experiment.fewshot_val_perts + synth_experiment.fewshot_test_perts) <= perts


def test_two_file_experiment_splits_rows_and_keeps_categories(synth_experiment_two_files, synth_spec):
    parts = [ad.read_h5ad(p) for p in synth_experiment_two_files.h5ad_paths]
    assert sum(p.n_obs for p in parts) == synth_spec.n_cells
    cats = [list(p.obs[synth_spec.pert_col].cat.categories) for p in parts]
    assert cats[0] == cats[1] and synth_spec.control_pert in cats[0]


def test_dense_experiment_writes_dense_x(tmp_path):
    from state_core.data.features import open_features

    spec = SynthSpec(n_cells=300, n_genes=40, n_perturbations=4, sparse=False)
    exp = write_synthetic_experiment(tmp_path, spec, num_hvgs=16, embed_key=None)
    with open_features(exp.h5ad_paths[0], "X") as x, open_features(exp.h5ad_paths[0], "X_hvg") as hvg:
        assert x.shape == (300, 40) and hvg.shape == (300, 16)
    written = ad.read_h5ad(exp.h5ad_paths[0])
    assert isinstance(written.X, np.ndarray) and "X_state" not in written.obsm


def test_cell_seed_draws_new_cells_of_the_same_biology(synth_spec, synth_adata):
    fresh = make_synthetic_adata(replace(synth_spec, cell_seed=1))
    assert (synth_adata.X != fresh.X).nnz > 0
    np.testing.assert_array_equal(fresh.uns["synth"]["perturbations"], synth_adata.uns["synth"]["perturbations"])

    # same ground truth: per-gene means of the two samples agree far better than with another seed
    def gene_means(a):
        return np.log1p(np.asarray(a.X.mean(0)).ravel())

    other = make_synthetic_adata(replace(synth_spec, seed=5))
    same = np.corrcoef(gene_means(synth_adata), gene_means(fresh))[0, 1]
    different = np.corrcoef(gene_means(synth_adata), gene_means(other))[0, 1]
    assert same > 0.95 and same > different + 0.2


def test_programme_gains_change_responses_per_cell_type(synth_spec):
    base = make_synthetic_adata(synth_spec)
    gained = make_synthetic_adata(replace(synth_spec, programme_gain_sd=0.8))
    assert base.obs.equals(gained.obs)  # labels untouched; only the programme responses differ
    assert (base.X != gained.X).nnz > 0
    with pytest.raises(DataError):
        SynthSpec(programme_gain_sd=-1.0)
