"""`train_st` end to end on tiny synthetic data: run folder, safe checkpoints, resume, baselines."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from state_core.errors import ArtifactError, ConfigError
from state_core.train.fit import train_st
from state_core.runs.load import load_run


def test_run_folder_has_every_artifact(trained):
    for name in (
        "config.yaml",
        "vocab.json",
        "model.json",
        "model.safetensors",
        "split/split_manifest.npz",
        "checkpoints/last.ckpt",
        "checkpoints/final.ckpt",
        "version_0/metrics.csv",
    ):
        assert (trained / name).is_file(), name
    assert not (trained / "checkpoints/last.ckpt").is_symlink()


def test_checkpoints_load_without_unpickling_objects(trained):
    ckpt = torch.load(trained / "checkpoints/final.ckpt", map_location="cpu", weights_only=True)
    weights = load_file(str(trained / "model.safetensors"))
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[k], weights[k]) for k in weights)
    assert ckpt["global_step"] == 8


def test_load_run_rebuilds_the_model(trained):
    run = load_run(trained)
    assert run.model_kind == "state_sm" and not run.model.training
    assert len(run.vocab.perturbations) == run.model_config.n_perturbations
    last = load_run(trained, checkpoint="last")
    for a, b in zip(run.model.state_dict().values(), last.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ArtifactError, match="does not exist"):
        load_run(trained, checkpoint="nope")


def test_resume_after_a_kill_gives_the_same_weights(synth_experiment, tmp_path, trained, train_cfg):
    # "kill" after step 4: keep only what a run stopped there would have left, then start again.
    run = tmp_path / "st"
    shutil.copytree(trained, run)
    shutil.copy(run / "checkpoints/step=4.ckpt", run / "checkpoints/last.ckpt")
    for name in ("model.safetensors", "model.json", "checkpoints/final.ckpt"):
        (run / name).unlink()
    resumed = train_st(train_cfg(synth_experiment, tmp_path, "st", "training.max_steps=8"))
    a, b = load_file(str(trained / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0


def test_resume_with_another_model_config_is_refused(synth_experiment, tmp_path, trained, train_cfg):
    shutil.copytree(trained, tmp_path / "st")
    with pytest.raises(ConfigError, match="different model/data config"):
        train_st(train_cfg(synth_experiment, tmp_path, "st", "training.max_steps=8", "model.kwargs.hidden_dim=16"))


@pytest.mark.parametrize("kind", ["perturb_mean", "context_mean"])
def test_statistical_baselines_fit_without_training(synth_experiment, tmp_path, kind, train_cfg):
    run = train_st(train_cfg(synth_experiment, tmp_path, kind, f"model={kind}", "training.max_steps=1"))
    loaded = load_run(run)
    assert loaded.model_kind == kind
    buffers = dict(loaded.model.named_buffers())
    stat = buffers["offsets" if kind == "perturb_mean" else "latent_means"]
    assert torch.isfinite(stat).all() and stat.abs().sum() > 0
    if kind == "perturb_mean":
        assert torch.equal(stat[loaded.vocab.control_index], torch.zeros_like(stat[0]))


def test_predict_writes_one_row_per_test_cell_and_metrics(trained, synth_experiment):
    import anndata as ad

    from state_core.data.splits import SplitManifest
    from state_core.train.predict import predict_test_split

    out = predict_test_split(trained, profile="minimal")
    pred, real = ad.read_h5ad(out / "adata_pred.h5ad"), ad.read_h5ad(out / "adata_real.h5ad")
    manifest = SplitManifest.load(trained / "split")
    assert pred.n_obs == real.n_obs == manifest.n_cells("test")
    assert list(pred.obs["source_row"]) == list(real.obs["source_row"])
    assert set(pred.obs["cell_type"]) == {synth_experiment.fewshot_cell_type}
    assert set(pred.obs["gene"]) == set(synth_experiment.fewshot_test_perts) | {"non-targeting"}
    assert pred.obsm["X_hvg"].shape == (pred.n_obs, 64)
    import json

    summary = json.loads((out / "metrics.json").read_text())
    assert "pearson_delta" in summary["mean"]
    assert (out / synth_experiment.fewshot_cell_type / "agg_results.csv").is_file()
    assert synth_experiment.fewshot_cell_type in (out / "report.html").read_text()  # one report, all cell types


def test_bad_experiment_leaves_no_run_folder(tmp_path, train_cfg):
    from state_core.errors import ConfigError

    toml = tmp_path / "bad.toml"
    toml.write_text('[datasets]\nsynth = "missing_dir"\n[training]\nsynth = "train"\n')
    cfg = train_cfg(type("E", (), {"fewshot_toml": toml}), tmp_path / "runs", "bad", "training.max_steps=1")
    with pytest.raises(ConfigError, match="missing_dir"):
        train_st(cfg)
    assert not (tmp_path / "runs" / "bad").exists()


def test_embedding_space_model_predicts_without_expression_metrics(synth_experiment, tmp_path, train_cfg):
    import anndata as ad

    from state_core.train.predict import predict_test_split

    run = train_st(
        train_cfg(
            synth_experiment,
            tmp_path,
            "emb",
            "training.max_steps=2",
            "data.kwargs.embed_key=X_state",
            "data.kwargs.output_space=embedding",
        )
    )
    out = predict_test_split(run, profile="minimal")
    assert ad.read_h5ad(out / "adata_pred.h5ad").obsm["X_state"].shape[1] == 16
    assert not (out / "metrics.json").exists()


def test_the_default_run_denoises_its_table_through_the_programmes_of_the_training_shifts(
    synth_experiment, tmp_path, train_cfg
):
    run = train_st(train_cfg(synth_experiment, tmp_path, "lowrank", "training.max_steps=2"))
    weights = load_file(str(run / "model.safetensors"))
    model = load_run(run).model.eval()
    assert model.config.shift_shrinkage and model.config.shift_lowrank
    analysis, synthesis = weights["shift_basis_in"], weights["shift_basis_out"]
    rank = int((analysis.abs().sum(1) > 0).sum())
    assert rank >= 1 and not analysis[rank:].any() and not synthesis[rank:].any()  # the generator has programmes
    table, factors = weights["pert_shift"], weights["shift_factors"]
    inside = (table @ analysis.T) @ synthesis
    pert = torch.arange(table.shape[0])
    with torch.no_grad():
        torch.testing.assert_close(model.eval_shift(pert), inside + (table - inside) * factors)
        assert torch.equal(model.train().eval_shift(pert), table)  # training sees the plain table


def test_shift_shrinkage_shrinks_the_trained_table_by_its_sampling_noise(synth_experiment, tmp_path, train_cfg):
    import anndata as ad
    import numpy as np

    from state_core.data.splits import SplitManifest
    from state_core.runs.layout import SPLIT_DIR

    extra = (
        "training.max_steps=2",
        "model.kwargs.shift_shrinkage=true",
        "model.kwargs.shift_lowrank=false",  # the gene-by-gene rule alone
        "model.kwargs.train_shift=false",
    )
    run = train_st(train_cfg(synth_experiment, tmp_path, "shrunk", *extra))
    loaded = load_run(run)
    weights = load_file(str(run / "model.safetensors"))
    raw = weights["pert_shift"].double().numpy()
    table = (weights["pert_shift"] * weights["shift_factors"]).double().numpy()  # what eval mode adds
    # the same empirical-Bayes rule, from the training cells directly (the table is fixed at the raw shifts)
    vocab, entry = loaded.vocab, SplitManifest.load(run / SPLIT_DIR).files[0]
    adata = ad.read_h5ad(entry.path)
    rows = np.asarray(entry.train)
    x = np.asarray(adata.obsm[vocab.embed_key][rows], dtype=np.float64)
    ct = adata.obs[vocab.cell_type_key].astype(str).to_numpy()[rows]
    pert = adata.obs[vocab.pert_col].astype(str).to_numpy()[rows]
    control = vocab.perturbations[vocab.control_index]

    def mean_and_se(c, p):
        cells = x[(ct == c) & (pert == p)]
        return cells.mean(0), cells.var(0, ddof=1) / len(cells)

    shifts, variances = {}, {}
    for p in vocab.perturbations:
        seen = [c for c in vocab.cell_types if p != control and np.any((ct == c) & (pert == p))]
        if not seen:
            continue
        parts = [(mean_and_se(c, p), mean_and_se(c, control)) for c in seen]
        shifts[p] = np.mean([m - mc for (m, _), (mc, _) in parts], 0)
        variances[p] = np.sum([v + vc for (_, v), (_, vc) in parts], 0) / len(seen) ** 2
    tau2 = np.maximum(np.mean([s**2 for s in shifts.values()], 0) - np.mean(list(variances.values()), 0), 0)
    for i, p in enumerate(vocab.perturbations):
        if p in shifts:
            expected = shifts[p] * np.sqrt(tau2 / np.maximum(tau2 + variances[p], 1e-12))
            np.testing.assert_allclose(raw[i], shifts[p], rtol=1e-3, atol=1e-5)
            np.testing.assert_allclose(table[i], expected, rtol=1e-3, atol=1e-5)
            assert np.abs(table[i]).sum() < np.abs(shifts[p]).sum()  # pulled towards 0
