"""The ST model: shapes, set behaviour, config validation and ONNX export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from state_core.errors import ConfigError
from state_core.models.st import STConfig, StateTransitionModel


def tiny_config(**overrides) -> STConfig:
    values = dict(
        input_dim=6,
        output_dim=6,
        n_perturbations=4,
        hidden_dim=16,
        n_layers=2,
        n_heads=4,
        ffn_dim=32,
        gene_dim=5,
        decoder_hidden_dims=(8,),
        dropout=0.0,
    )
    values.update(overrides)
    return STConfig(**values)


def tiny_model(**overrides) -> StateTransitionModel:
    torch.manual_seed(0)
    return StateTransitionModel(tiny_config(**overrides)).eval()


def test_forward_shapes() -> None:
    out = tiny_model(n_batches=3)(torch.randn(2, 5, 6), torch.tensor([0, 3]), torch.zeros(2, 5, dtype=torch.long))
    assert out.latent.shape == (2, 5, 6) and out.genes.shape == (2, 5, 5)


def test_no_gene_decoder_without_gene_targets() -> None:
    assert tiny_model(gene_dim=None)(torch.randn(1, 3, 6), torch.tensor([1])).genes is None


@pytest.mark.parametrize("space", ["gene", "all", "embedding"])
def test_model_is_permutation_equivariant(space: str) -> None:
    model, ctrl, pert = tiny_model(output_space=space), torch.randn(2, 7, 6), torch.tensor([1, 2])
    perm = torch.randperm(7)
    torch.testing.assert_close(
        model(ctrl, pert).latent[:, perm], model(ctrl[:, perm], pert).latent, atol=1e-5, rtol=1e-5
    )


def test_padding_does_not_change_real_predictions() -> None:
    model, ctrl, pert = tiny_model(), torch.randn(1, 4, 6), torch.tensor([2])
    padded = torch.cat([ctrl, torch.zeros(1, 2, 6)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    torch.testing.assert_close(
        model(padded, pert, mask=mask).latent[:, :4], model(ctrl, pert).latent, atol=1e-5, rtol=1e-5
    )


def test_perturbation_features_change_predictions() -> None:
    model, ctrl = tiny_model(pert_feature_dim=3), torch.randn(1, 4, 6)
    before = model(ctrl, torch.tensor([1])).latent
    model.set_perturbation_features(torch.randn(4, 3))
    assert not torch.allclose(before, model(ctrl, torch.tensor([1])).latent)
    with pytest.raises(ConfigError, match="expects"):
        model.set_perturbation_features(torch.randn(4, 2))


def test_output_activation_is_explicit() -> None:
    assert (tiny_model(output_activation="relu")(torch.randn(2, 5, 6), torch.tensor([0, 1])).latent >= 0).all()
    assert (tiny_model(output_activation="none")(torch.randn(2, 5, 6), torch.tensor([0, 1])).latent < 0).any()


def test_config_round_trips_and_rejects_unknown_keys() -> None:
    config = tiny_config()
    assert STConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="confidence_head"):
        STConfig.from_dict({**config.to_dict(), "confidence_head": True})


def test_config_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(output_space="latent", hidden_dim=15, input_dim=7).validate()
    assert {"output_space", "hidden_dim"} <= {p.key for p in err.value.problems}


@pytest.mark.parametrize(
    "options",
    [{}, {"residual_space": "input", "pert_shift": True, "context_gain": True, "mean_change_cap": 0.5}],
    ids=["plain", "capped-shift"],
)
def test_onnx_export_runs_at_another_shape(tmp_path, options) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = tiny_model(n_batches=3, **options)
    torch.nn.init.normal_(model.project_out[-1].weight)  # a transformer change that is not zero
    if model.pert_shift is not None:
        model.init_pert_shift(torch.randn(model.pert_shift.shape))
    ctrl, pert, batch = torch.randn(2, 5, 6), torch.tensor([0, 3]), torch.zeros(2, 5, dtype=torch.long)
    mask = torch.ones(2, 5, dtype=torch.bool)
    b, s = torch.export.Dim("B"), torch.export.Dim("S")
    program = torch.onnx.export(
        model,
        (ctrl, pert, batch, mask),
        dynamo=True,
        dynamic_shapes=({0: b, 1: s}, {0: b}, {0: b, 1: s}, {0: b, 1: s}),
        input_names=["ctrl", "pert_idx", "batch_idx", "mask"],
        output_names=["latent", "genes"],
    )
    program.save(str(tmp_path / "st.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "st.onnx"))
    ctrl, pert, batch = torch.randn(3, 9, 6), torch.tensor([0, 1, 2]), torch.randint(0, 3, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    latent, genes = session.run(
        None, {"ctrl": ctrl.numpy(), "pert_idx": pert.numpy(), "batch_idx": batch.numpy(), "mask": mask.numpy()}
    )
    expected = model(ctrl, pert, batch, mask)
    np.testing.assert_allclose(latent, expected.latent.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(genes, expected.genes.detach().numpy(), atol=1e-5)


def test_input_residual_starts_at_the_identity_plus_the_shift_table() -> None:
    model = tiny_model(output_space="gene", residual_space="input", code_norm=True, pert_shift=True)
    ctrl = torch.randn(2, 5, 6)
    torch.testing.assert_close(model(ctrl, torch.tensor([0, 3])).latent, ctrl)  # untrained = control cells
    shifts = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    model.init_pert_shift(shifts)
    out = model(ctrl, torch.tensor([0, 3])).latent
    torch.testing.assert_close(out - ctrl, shifts[[0, 3]][:, None, :].expand(2, 5, 6))
    with pytest.raises(ConfigError, match="shape"):
        model.init_pert_shift(torch.zeros(3, 6))


def test_hidden_residual_is_arc_states_rule() -> None:
    model = tiny_model(output_space="gene", residual_space="hidden")
    ctrl, pert = torch.randn(1, 4, 6), torch.tensor([1])
    x, basal = model.encode(ctrl, pert, None)
    torch.testing.assert_close(model(ctrl, pert).latent, model.project_out(model.transformer(x) + basal))
    # files written before residual_space existed keep the rule they were trained with
    assert tiny_config(output_space="gene").residual == "hidden" and tiny_config(output_space="all").residual == "input"


def test_code_norm_balances_the_two_codes() -> None:
    model = tiny_model(code_norm=True)
    x, basal = model.encode(100 * torch.rand(1, 8, 6), torch.tensor([2]), None)
    pert = x - basal
    assert basal.norm(dim=-1).mean() / pert.norm(dim=-1).mean() < 2.0


def test_residual_rules_are_validated() -> None:
    with pytest.raises(ConfigError, match="residual_space"):
        tiny_config(residual_space="input", output_dim=5).validate()
    with pytest.raises(ConfigError, match="pert_shift"):
        tiny_config(residual_space="hidden", pert_shift=True).validate()
    with pytest.raises(ConfigError, match="residual_space"):
        tiny_config(residual_space="sideways").validate()


def test_context_gain_starts_at_the_plain_shift_and_scales_it_per_set() -> None:
    plain = tiny_model(output_space="gene", residual_space="input", code_norm=True, pert_shift=True)
    gained = tiny_model(output_space="gene", residual_space="input", code_norm=True, pert_shift=True, context_gain=True)
    shifts = torch.randn(4, 6)
    plain.init_pert_shift(shifts)
    gained.init_pert_shift(shifts)
    ctrl, pert = torch.rand(2, 5, 6), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.allclose(plain(ctrl, pert).latent, gained(ctrl, pert).latent, atol=1e-6)
        # a gain of 1 + b on gene j moves every cell's prediction by b_j * shift[p, j]
        gained.context_gain.bias.copy_(torch.linspace(-0.5, 0.5, 6))
        moved = gained(ctrl, pert).latent - plain(ctrl, pert).latent
    expected = torch.linspace(-0.5, 0.5, 6) * shifts[pert][:, None, :]
    assert torch.allclose(moved, expected.expand_as(moved), atol=1e-5)


def test_context_gain_needs_the_shift_table_and_learns_faster() -> None:
    with pytest.raises(ConfigError, match="context_gain"):
        tiny_config(residual_space="input", context_gain=True).validate()
    with pytest.raises(ConfigError, match="shift_lr_scale"):
        tiny_config(shift_lr_scale=0.0).validate()
    model = tiny_model(residual_space="input", pert_shift=True, context_gain=True, shift_lr_scale=10.0)
    (rest, one), (fast, ten) = model.lr_groups()
    assert (one, ten) == (1.0, 10.0) and len(fast) == 3  # the table, the gain's weight and bias
    assert len(rest) + len(fast) == len(list(model.parameters()))


def test_a_frozen_shift_table_is_kept_out_of_the_optimiser():
    model = tiny_model(
        output_space="gene", residual_space="input", pert_shift=True, context_gain=True, train_shift=False
    )
    assert not model.pert_shift.requires_grad
    trainable = {id(p) for params, _ in model.lr_groups() for p in params if p.requires_grad}
    assert id(model.pert_shift) not in trainable
    assert id(model.context_gain.weight) in trainable  # the gain still learns


def test_shift_table_options_without_a_table_are_rejected():
    with pytest.raises(ConfigError, match="shift_shrinkage"):
        tiny_config(residual_space="input", shift_shrinkage=True).validate()
    with pytest.raises(ConfigError, match="train_shift"):
        tiny_config(residual_space="input", train_shift=False).validate()
    with pytest.raises(ConfigError, match="centred_residual"):
        tiny_config(residual_space="input", centred_residual=True).validate()
    with pytest.raises(ConfigError, match="mean_change_cap"):
        tiny_config(residual_space="input", mean_change_cap=0.5).validate()
    with pytest.raises(ConfigError, match="mean_change_cap"):
        tiny_config(residual_space="input", pert_shift=True, mean_change_cap=-1.0).validate()


def test_a_centred_residual_leaves_the_set_mean_to_the_shift_table():
    model = tiny_model(residual_space="input", pert_shift=True, centred_residual=True, gene_dim=None)
    torch.nn.init.normal_(model.project_out[-1].weight)  # a transformer change that is not zero
    shifts = torch.randn(4, 6)
    model.init_pert_shift(shifts)
    ctrl, pert = torch.randn(2, 7, 6), torch.tensor([1, 3])
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False  # padding is left out of the mean
    out = model(ctrl, pert, mask=mask).latent
    for b in range(2):
        real = mask[b]
        change = out[b, real] - ctrl[b, real]
        torch.testing.assert_close(change.mean(0), shifts[pert[b]], atol=1e-5, rtol=1e-5)
        assert change.std(0).min() > 1e-3  # cells still move individually


@pytest.mark.parametrize("cap", [0.0, 0.5])
def test_a_capped_mean_change_never_reverses_the_shift_table(cap: float):
    model = tiny_model(residual_space="input", pert_shift=True, mean_change_cap=cap, gene_dim=None)
    torch.nn.init.normal_(model.project_out[-1].weight, std=3.0)  # a transformer change larger than the table
    shifts = torch.randn(4, 6)
    model.init_pert_shift(shifts)
    ctrl, pert = torch.randn(2, 7, 6), torch.tensor([1, 3])
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False  # padding is left out of the mean
    capped = model(ctrl, pert, mask=mask).latent
    uncapped = StateTransitionModel(dataclasses.replace(model.config, mean_change_cap=None)).eval()
    uncapped.load_state_dict(model.state_dict())
    free = uncapped(ctrl, pert, mask=mask).latent
    for b in range(2):
        real = mask[b]
        change, free_change, shift = capped[b, real] - ctrl[b, real], free[b, real] - ctrl[b, real], shifts[pert[b]]
        mean_change = change.mean(0) - shift  # the transformer's part of the set mean
        assert torch.all(mean_change.abs() <= cap * shift.abs() + 1e-5)
        assert torch.all(change.mean(0) * shift >= 0)  # same sign as the table, gene by gene
        assert (free_change.mean(0) - shift).abs().max() > cap * shift.abs().max()  # the cap did bind
        # each cell's deviation from the set mean is the uncapped model's
        torch.testing.assert_close(change - change.mean(0), free_change - free_change.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.train()(ctrl, pert, mask=mask).latent, free)  # training is unchanged


def test_shift_factors_scale_the_table_in_eval_mode_only():
    model = tiny_model(residual_space="input", pert_shift=True, shift_shrinkage=True, gene_dim=None)
    model.init_pert_shift(torch.randn(4, 6))
    factors = torch.rand(4, 6)
    model.set_shift_factors(factors)
    ctrl, pert = torch.randn(1, 3, 6), torch.tensor([2])
    shrunk = model(ctrl, pert).latent - ctrl  # eval mode; the transformer's change is 0 at initialisation
    torch.testing.assert_close(shrunk, (model.pert_shift[2] * factors[2]).expand(1, 3, 6))
    plain = model.train()(ctrl, pert).latent - ctrl
    torch.testing.assert_close(plain, model.pert_shift[2].expand(1, 3, 6))
    with pytest.raises(ValueError, match="shift factors"):
        model.set_shift_factors(torch.ones(3, 6))


def test_the_programme_basis_replaces_the_shrinkage_inside_the_programmes_in_eval_mode_only():
    model = tiny_model(residual_space="input", pert_shift=True, shift_shrinkage=True, shift_lowrank=True, gene_dim=None)
    table = torch.randn(4, 6)
    model.init_pert_shift(table)
    factors = torch.zeros(4, 6)  # everything outside the programmes shrunk away
    model.set_shift_factors(factors)
    direction = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]) / 2**0.5  # one programme: genes 0 and 1
    basis = torch.zeros(model.shift_basis_in.shape)
    basis[0] = direction
    model.set_shift_basis(basis, basis)
    ctrl, pert = torch.randn(1, 3, 6), torch.tensor([2])
    added = model(ctrl, pert).latent - ctrl  # eval mode; the transformer's change is 0 at initialisation
    expected = (table[2] @ direction) * direction  # the row's part along the programme
    torch.testing.assert_close(added, expected.expand(1, 3, 6))
    plain = model.train()(ctrl, pert).latent - ctrl
    torch.testing.assert_close(plain, table[2].expand(1, 3, 6))
    with pytest.raises(ValueError, match="shift basis"):
        model.set_shift_basis(torch.ones(2, 6), torch.ones(2, 6))
    with pytest.raises(ConfigError, match="shift_lowrank"):
        tiny_config(residual_space="input", pert_shift=True, shift_lowrank=True).validate()
