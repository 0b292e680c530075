"""Training-split statistics of the non-learned baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from state_core.data.splits import SplitManifest
from state_core.data.vocab import Vocab
from state_core.errors import ConfigError
from state_core.runs.layout import SPLIT_DIR, VOCAB_FILE
from state_core.train.baseline_stats import train_group_means


def test_an_empty_train_split_is_a_config_error(trained):
    manifest = SplitManifest.load(trained / SPLIT_DIR)
    no_train = dataclasses.replace(
        manifest, files=tuple(dataclasses.replace(f, train=np.zeros(0, dtype=np.int64)) for f in manifest.files)
    )
    with pytest.raises(ConfigError, match="train split has no cells"):
        train_group_means(no_train, Vocab.load(trained / VOCAB_FILE), "X_hvg")


def test_group_mean_variances_match_numpy(trained):
    import anndata as ad

    manifest = SplitManifest.load(trained / SPLIT_DIR)
    vocab = Vocab.load(trained / VOCAB_FILE)
    stats = train_group_means(manifest, vocab, "X_hvg", squares=True)
    entry = manifest.files[0]
    adata = ad.read_h5ad(entry.path)
    rows = np.asarray(entry.train)
    obs = adata.obs.iloc[rows]
    ct, pert = vocab.cell_types[0], vocab.perturbations[0]
    pick = rows[((obs[vocab.cell_type_key].astype(str) == ct) & (obs[vocab.pert_col].astype(str) == pert)).to_numpy()]
    x = np.asarray(adata.obsm["X_hvg"][pick], dtype=np.float64)
    assert stats.counts[0, 0] == len(pick) > 1
    np.testing.assert_allclose(stats.mean_variances()[0, 0], x.var(0, ddof=1) / len(pick), rtol=1e-6, atol=1e-12)
