"""Set losses against hand-computed values and geomloss."""

from __future__ import annotations

import pytest
import torch
from geomloss import SamplesLoss

from state_core.errors import ConfigError
from state_core.models.losses import LossConfig, energy_distance, make_loss, mse


def test_energy_distance_of_two_point_sets_by_hand() -> None:
    x = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # |x1 - x2| = 5
    y = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    # cross mean = (0 + 0 + 5 + 5) / 4 = 2.5; within-x mean = (0 + 5 + 5 + 0) / 4 = 2.5; within-y = 0
    torch.testing.assert_close(energy_distance(x, y), torch.tensor([2.5 - 1.25]))


def test_energy_distance_matches_geomloss_per_set() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(3, 12, 5), torch.randn(3, 12, 5) + 0.5
    torch.testing.assert_close(energy_distance(x, y), SamplesLoss("energy")(x, y), atol=1e-4, rtol=1e-4)


def test_masked_energy_equals_energy_of_the_real_cells() -> None:
    torch.manual_seed(1)
    x, y = torch.randn(2, 8, 3), torch.randn(2, 8, 3)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[:, 6:] = False
    x_pad = x.clone()
    x_pad[:, 6:] = 1e3
    torch.testing.assert_close(
        energy_distance(x_pad, y, mask, mask), energy_distance(x[:, :6], y[:, :6]), atol=1e-4, rtol=1e-4
    )


def test_energy_gradient_is_finite_when_prediction_equals_target() -> None:
    y = torch.randn(2, 6, 4)
    x = y.clone().requires_grad_(True)
    energy_distance(x, y).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_masked_sinkhorn_matches_geomloss_on_the_real_cells() -> None:
    torch.manual_seed(2)
    x, y = torch.randn(2, 7, 3), torch.randn(2, 7, 3)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[:, 5:] = False
    expected = SamplesLoss("sinkhorn", p=2, blur=0.05)(x[:, :5].contiguous(), y[:, :5].contiguous())
    torch.testing.assert_close(make_loss("sinkhorn")(x, y, mask, mask), expected, atol=1e-4, rtol=1e-4)


def test_se_is_the_weighted_sum_of_its_parts() -> None:
    torch.manual_seed(3)
    x, y = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    loss = make_loss("se", sinkhorn_weight=0.5, energy_weight=2.0)
    parts = loss.parts(x, y)
    torch.testing.assert_close(loss(x, y), 0.5 * parts["sinkhorn"] + 2.0 * parts["energy"])


def test_mse_per_set_by_hand() -> None:
    x = torch.tensor([[[1.0, 1.0]], [[0.0, 2.0]]])
    y = torch.zeros(2, 1, 2)
    torch.testing.assert_close(mse(x, y), torch.tensor([1.0, 2.0]))


def test_decoder_loss_weight_is_an_alias_of_decoder_weight() -> None:
    assert LossConfig.from_dict({"decoder_loss_weight": 0.1}).decoder_weight == 0.1


def test_unknown_loss_key_and_name_are_rejected() -> None:
    with pytest.raises(ConfigError, match="softplus"):
        LossConfig.from_dict({"softplus": True})
    with pytest.raises(ConfigError, match="wasserstein"):
        make_loss("wasserstein")
