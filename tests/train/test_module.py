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
