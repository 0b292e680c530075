"""The set transformer is non-causal, permutation-equivariant, and ignores padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from state_core.models.set_transformer import RMSNorm, SetTransformer, _attend, attention_mask


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


def test_explicit_cpu_attention_matches_sdpa_with_padding_and_gradients() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 7, 12, requires_grad=True) for _ in range(3))
    mask = attention_mask(torch.tensor([[True] * 7, [True] * 4 + [False] * 3, [False] * 7]))
    explicit = _attend(q, k, v, 3, mask, 0.0)  # 7 cells on CPU: the explicit path
    grads = torch.autograd.grad(explicit.square().sum(), (q, k, v))
    heads = [t.reshape(3, 7, 3, 4).transpose(1, 2) for t in (q, k, v)]
    fused = F.scaled_dot_product_attention(*heads, attn_mask=mask).transpose(1, 2).reshape(3, 7, 12)
    torch.testing.assert_close(explicit, fused, atol=1e-6, rtol=1e-5)
    for mine, theirs in zip(grads, torch.autograd.grad(fused.square().sum(), (q, k, v))):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
