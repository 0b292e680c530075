"""The set transformer is non-causal, permutation-equivariant, and ignores padding."""

from __future__ import annotations

import pytest
import torch

from state_core.models.set_transformer import RMSNorm, SetTransformer


def tiny(kind: str) -> SetTransformer:
    torch.manual_seed(0)
    return SetTransformer(kind, hidden=16, n_layers=2, n_heads=4, ffn=32).eval()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_permuting_the_set_permutes_the_outputs(kind: str) -> None:
    model, x = tiny(kind), torch.randn(2, 9, 16)
    perm = torch.randperm(9)
    torch.testing.assert_close(model(x)[:, perm], model(x[:, perm]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_first_cell_sees_the_last_cell(kind: str) -> None:
    model, x = tiny(kind), torch.randn(1, 6, 16)
    changed = x.clone()
    changed[0, -1] += torch.randn(16)  # not a constant shift: LayerNorm would remove it
    assert (model(x)[0, 0] - model(changed)[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_padding_does_not_change_real_outputs_and_stays_finite(kind: str) -> None:
    model, real = tiny(kind), torch.randn(1, 5, 16)
    padded = torch.cat([real, 100 * torch.randn(1, 3, 16)], dim=1)  # [1, 8, 16]
    mask = torch.tensor([[True] * 5 + [False] * 3])
    out = model(padded, mask)
    torch.testing.assert_close(out[:, :5], model(real), atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


def test_all_padding_set_gives_finite_output() -> None:
    out = tiny("llama")(torch.randn(2, 4, 16), torch.tensor([[True] * 4, [False] * 4]))
    assert torch.isfinite(out).all()


def test_rmsnorm_matches_the_formula() -> None:
    norm = RMSNorm(4)
    norm.weight.data = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    expected = x / torch.sqrt((x**2).mean() + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)
