"""Baselines share the ST forward signature and fit from plain statistics."""

from __future__ import annotations

import pytest
import torch

from state_core.errors import ConfigError
from state_core.models.baselines import (
    build_model,
    group_shifts,
    mean_shifts,
    shift_programme_basis,
    shift_shrinkage_factors,
)
from state_core.models.st import STConfig

CONFIG = STConfig(input_dim=3, output_dim=3, n_perturbations=3, hidden_dim=8, n_heads=2, n_cell_types=2, dropout=0.0)


def test_context_mean_predicts_the_cell_type_mean_for_every_set() -> None:
    model = build_model("context_mean", CONFIG).fit(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    out = model(torch.randn(2, 4, 3), torch.tensor([0, 2]), cell_type_idx=torch.tensor([1, 0]))
    assert not model.requires_training
    torch.testing.assert_close(out.latent[0], torch.tensor([4.0, 5.0, 6.0]).expand(4, 3))
    torch.testing.assert_close(out.latent[1], torch.tensor([1.0, 2.0, 3.0]).expand(4, 3))


def test_perturb_mean_adds_the_shift_averaged_over_cell_types() -> None:
    control_means = torch.tensor([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])  # [C, D]
    pert_means = control_means[:, None, :].repeat(1, 3, 1)  # [C, n_pert, D]
    pert_means[0, 1] += 1.0
    pert_means[1, 1] += 3.0  # perturbation 1 shifts by 1 in type 0 and 3 in type 1 -> mean 2
    counts = torch.tensor([[5, 5, 0], [5, 5, 0]])  # perturbation 2 never seen -> zero shift
    model = build_model("perturb_mean", CONFIG).fit(pert_means, counts, control_means)
    ctrl = torch.randn(3, 2, 3)
    out = model(ctrl, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(out.latent - ctrl, torch.tensor([0.0, 2.0, 0.0])[:, None, None].expand(3, 2, 3))


def test_embed_sum_has_no_set_interaction() -> None:
    model = build_model("embed_sum", CONFIG).eval()
    ctrl = torch.randn(1, 4, 3)
    changed = ctrl.clone()
    changed[0, -1] += 5.0
    torch.testing.assert_close(
        model(ctrl, torch.tensor([1])).latent[0, 0], model(changed, torch.tensor([1])).latent[0, 0]
    )
    assert model.requires_training


def test_statistics_of_the_wrong_shape_are_rejected() -> None:
    with pytest.raises(ConfigError, match="latent_means"):
        build_model("context_mean", CONFIG).fit(torch.zeros(5, 3))


def test_unknown_model_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="cpa"):
        build_model("cpa", CONFIG)


def test_perturb_mean_respects_the_output_activation():
    # log-normalised expression cannot go below zero: a negative shift is clipped by the ReLU output
    import torch

    from state_core.models.baselines import PerturbMean
    from state_core.models.st import STConfig

    cfg = STConfig(
        input_dim=3, output_dim=3, n_perturbations=2, hidden_dim=8, n_heads=1, ffn_dim=8, output_activation="relu"
    )
    model = PerturbMean(cfg)
    model.fit(torch.tensor([[[0.0, 0, 0], [-5.0, 1.0, 0.0]]]), torch.tensor([[0, 10]]), torch.zeros(1, 3))
    out = model(torch.ones(1, 2, 3), torch.tensor([1]))
    assert torch.equal(out.latent, torch.tensor([[[0.0, 2.0, 1.0], [0.0, 2.0, 1.0]]]))


def test_shift_baselines_are_unclipped_by_default():
    from state_core.models.presets import DataDims, resolve_model_config

    dims = DataDims(
        input_dim=4, output_dim=4, n_perturbations=3, n_cell_types=2, output_space="gene", embed_key="X_hvg"
    )
    for name in ("perturb_mean", "perturb_mean_celltype"):
        assert resolve_model_config(name, dims).model.output_activation == "none"
        assert resolve_model_config(name, dims, {"output_activation": "relu"}).model.output_activation == "relu"
    assert resolve_model_config("state_sm", dims).model.output_activation == "relu"


def test_perturb_mean_celltype_scales_the_shift_by_the_cell_type_strength() -> None:
    control_means = torch.zeros(2, 3)  # [C, D]
    pert_means = torch.zeros(2, 3, 3)  # [C, n_pert, D]
    pert_means[0, 1] = torch.tensor([1.0, -1.0, 0.0])
    pert_means[1, 1] = torch.tensor([3.0, -3.0, 0.0])  # type 1 responds 3x as strongly as type 0
    pert_means[1, 2] = torch.tensor([0.0, 2.0, 2.0])  # perturbation 2 seen in type 1 only
    counts = torch.tensor([[5, 5, 0], [5, 5, 5]])
    model = build_model("perturb_mean_celltype", CONFIG).fit(pert_means, counts, control_means)
    plain = build_model("perturb_mean", CONFIG).fit(pert_means, counts, control_means)
    # offsets: p1 = (2, -2, 0), p2 = (0, 2, 2); type 0 saw p1 at half the offset -> scale 0.5
    torch.testing.assert_close(model.scales[0], torch.tensor(0.5))
    ctrl = torch.zeros(1, 2, 3)
    out = model(ctrl, torch.tensor([2]), cell_type_idx=torch.tensor([0])).latent  # held-out p2 in type 0
    torch.testing.assert_close(out[0, 0], 0.5 * plain.offsets[2])


def test_shrinkage_factors_pull_noise_to_zero_and_keep_clear_effects() -> None:
    gen = torch.Generator().manual_seed(0)
    n_pert, n_genes = 20, 3
    control_means = torch.zeros(1, n_genes)
    shifts = torch.zeros(1, n_pert, n_genes)
    shifts[0, :, 0] = 0.05 * torch.randn(n_pert, generator=gen)  # gene 0: no effect, noise of sd 0.05
    shifts[0, :, 1] = torch.where(torch.arange(n_pert) % 2 == 0, 2.0, -2.0)  # gene 1: large real effects
    shifts[0, :, 2] = 0.1 * torch.randn(n_pert, generator=gen)  # gene 2: real effects of sd ~0.09 beside noise
    counts = torch.ones(1, n_pert, dtype=torch.long)
    mean_vars = torch.full((1, n_pert, n_genes), 0.05**2)
    raw = mean_shifts(shifts, counts, control_means)
    factors = shift_shrinkage_factors(raw, counts, mean_vars, torch.zeros(1, n_genes))
    assert factors[:, 0].max() < 0.5  # noise shrunk hard
    torch.testing.assert_close(factors[:, 1], torch.ones(n_pert), rtol=2e-3, atol=0)  # clear effects kept
    # variance-matched: sqrt of the posterior-mean factor tau2 / (tau2 + v), from the gene's own shifts
    tau2 = (shifts[0, :, 2] ** 2).mean() - 0.05**2
    torch.testing.assert_close(factors[:, 2], torch.full((n_pert,), float((tau2 / (tau2 + 0.05**2)).sqrt())))
    exact = shift_shrinkage_factors(raw, counts, 0 * mean_vars, torch.zeros(1, n_genes))
    torch.testing.assert_close(exact, torch.ones(n_pert, n_genes))  # without noise nothing is shrunk


def test_programme_basis_keeps_shared_programmes_and_drops_the_noise_around_them() -> None:
    gen = torch.Generator().manual_seed(0)
    n_groups, n_genes, noise = 60, 400, 0.05
    programmes = torch.zeros(3, n_genes)
    for k in range(3):  # three co-regulated gene sets of 30 genes
        programmes[k, 30 * k : 30 * (k + 1)] = 1.0
    signal = torch.randn(n_groups, 3, generator=gen) @ programmes  # every group moves some programmes
    shifts = signal + noise * torch.randn(n_groups, n_genes, generator=gen)
    variances = torch.full((n_groups, n_genes), noise**2)
    basis = shift_programme_basis(shifts, variances, n_rows=16)
    assert basis.rank == 3 and basis.analysis.shape == (16, n_genes) and not basis.analysis[3:].any()
    denoised = basis.project(shifts)
    assert (denoised - signal).pow(2).mean() < 0.15 * (shifts - signal).pow(2).mean()  # most noise is gone
    assert (basis.project(signal) - signal).norm() < 0.05 * signal.norm()  # the programmes are kept
    only_noise = shift_programme_basis(noise * torch.randn(n_groups, n_genes, generator=gen), variances, 16)
    assert only_noise.rank == 0 and not only_noise.project(shifts).any()  # nothing shared: nothing kept


def test_programme_basis_is_found_through_uneven_noise() -> None:
    gen = torch.Generator().manual_seed(1)
    n_groups, n_genes = 40, 300
    signal = torch.outer(torch.randn(n_groups, generator=gen), (torch.arange(n_genes) < 20).float())
    gene_sd = torch.where(torch.arange(n_genes) % 2 == 0, 0.02, 0.2)  # noisy and quiet genes
    group_sd = torch.linspace(0.5, 2.0, n_groups)[:, None]  # groups of very different sizes
    sd = group_sd * gene_sd
    basis = shift_programme_basis(signal + sd * torch.randn(n_groups, n_genes, generator=gen), sd**2, 8)
    assert basis.rank == 1
    assert (basis.project(signal) - signal).norm() < 0.1 * signal.norm()


def test_group_shifts_are_per_cell_type_and_skip_groups_of_one_cell() -> None:
    means = torch.tensor([[[0.0, 0.0], [2.0, 1.0], [5.0, 5.0]], [[1.0, 1.0], [4.0, 1.0], [0.0, 0.0]]])
    counts = torch.tensor([[0, 10, 1], [0, 3, 0]])  # control zeroed; (type 0, pert 2) has a single cell
    mean_vars = torch.full((2, 3, 2), 0.1)
    shifts, variances = group_shifts(means, counts, means[:, 0], mean_vars, mean_vars[:, 0])
    torch.testing.assert_close(shifts, torch.tensor([[2.0, 1.0], [3.0, 0.0]]))
    torch.testing.assert_close(variances, torch.full((2, 2), 0.2))
