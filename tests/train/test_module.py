"""Training module pieces: learning-rate schedule and gradient clipping (done by the module, not Lightning)."""

import pytest
import torch

from state_core.models.losses import LossConfig
from state_core.train.module import OptimConfig, PerturbationTrainingModule, lr_factor


def test_warmup_then_cosine_to_the_floor():
    cfg = OptimConfig(lr_schedule="cosine", warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.55)
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    assert lr_factor(500, OptimConfig()) == 1.0  # constant by default


def test_gradients_are_clipped_to_the_global_norm():
    model = torch.nn.Linear(4, 4)
    module = PerturbationTrainingModule(model, LossConfig(), OptimConfig(gradient_clip_val=1.0))
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    module.on_before_optimizer_step(None)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total == pytest.approx(1.0, rel=1e-4)


def test_losses_stay_fp32_under_bf16_autocast():
    from state_core.data.cellsets import CellSetBatch
    from state_core.models.baselines import build_model
    from state_core.models.presets import DataDims, resolve_model_config

    dims = DataDims(input_dim=16, output_dim=16, n_perturbations=3, output_space="gene", embed_key="X_hvg")
    model = build_model("state_sm", resolve_model_config("state_sm", dims, {"hidden_dim": 32}).model)
    module = PerturbationTrainingModule(model, LossConfig(), OptimConfig())  # energy distance alone
    g = torch.Generator().manual_seed(0)
    b, s = 2, 8
    batch = CellSetBatch(
        ctrl=torch.rand(b, s, 16, generator=g) * 3,
        target=torch.rand(b, s, 16, generator=g) * 3,
        pert_idx=torch.tensor([1, 2]),
        cell_type_idx=torch.zeros(b, dtype=torch.long),
        batch_idx=torch.zeros(b, s, dtype=torch.long),
        mask=torch.ones(b, s, dtype=torch.bool),
        cell_id=torch.zeros(b, s, dtype=torch.long),
    )
    full = module._losses(batch)["total"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = module._losses(batch)["total"]
    assert mixed.dtype == torch.float32
    # only the model's forward is in bf16; the loss of its (bf16-rounded) output is exact fp32 arithmetic,
    # so it is not quantised to bf16's 8 bits (1/128 relative steps)
    assert mixed.item() != torch.tensor(mixed.item()).to(torch.bfloat16).float().item()
    assert mixed.item() == pytest.approx(full.item(), rel=2e-2)
