"""The pipeline's embed stage with method "se": X_state for every file, so ST can train on it."""

from __future__ import annotations

import anndata as ad

from state_core.config.experiment import load_experiment
from state_core.data.synth import SynthSpec, write_synthetic_experiment
from state_core.embed.experiment import EmbedOptions, embed_experiment


def test_se_embedding_of_an_experiment_reads_raw_counts_from_a_layer(se_model_dir, tmp_path):
    # Same 40 gene names as the tiny SE model's vocabulary; X is log-normalised, raw counts are in a layer.
    spec = SynthSpec(n_cells=60, n_genes=40, n_perturbations=4, seed=0)
    exp = write_synthetic_experiment(tmp_path / "exp", spec, num_hvgs=16, embed_key=None)
    toml = embed_experiment(
        exp.fewshot_toml,
        tmp_path / "embedded",
        EmbedOptions(method="se", se_model_dir=str(se_model_dir), se_layer="counts"),
    )
    cfg = load_experiment(toml)
    (path,) = sorted((tmp_path / "embedded").rglob("*.h5ad"))
    assert str(path.parent) == cfg.datasets["synth"]
    embedded = ad.read_h5ad(path)
    assert embedded.obsm["X_state"].shape[0] == spec.n_cells
    assert embedded.uns["X_state_meta"]["model_id"] == "tiny-random"
