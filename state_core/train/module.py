"""Lightning training module for ST and its baselines: losses, logging, optimiser and schedule.

The `nn.Module` does the math; this class only decides what is optimised and logged. Batches are
`state_core.data.cellsets.CellSetBatch` objects (`ctrl`, `target`, `pert_idx`, `batch_idx`, `mask`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from torch import nn

from state_core.models.losses import make_loss


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    max_steps: int = 1000
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr


@dataclass(frozen=True)
class LossConfig:
    name: str = "energy"
    decoder_weight: float = 1.0
    blur: float = 0.05
    sinkhorn_weight: float = 0.01
    energy_weight: float = 1.0


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """Multiplier of the base lr at optimiser step `step`: linear warm-up, then constant or cosine."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class PerturbationTrainingModule(pl.LightningModule):
    """Wraps an ST-style model (`forward(ctrl, pert_idx, batch_idx, mask, cell_type_idx)`)."""

    def __init__(self, model: nn.Module, loss: LossConfig, optim: OptimConfig):
        super().__init__()
        self.model = model
        self.loss_cfg = loss
        self.optim_cfg = optim
        kw = {"blur": loss.blur, "sinkhorn_weight": loss.sinkhorn_weight, "energy_weight": loss.energy_weight}
        self.loss_fn = make_loss(loss.name, **kw)

    def forward(self, batch):  # noqa: D401 - Lightning convention
        return self.model(batch.ctrl, batch.pert_idx, batch.batch_idx, batch.mask, batch.cell_type_idx)

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        out = self(batch)
        main = self.loss_fn(out.latent.float(), batch.target.float(), batch.mask, batch.mask)  # [B]
        losses = {"main": torch.nanmean(main)}
        target_genes = getattr(batch, "target_genes", None)
        if out.genes is not None and target_genes is not None:
            dec = self.loss_fn(out.genes.float(), target_genes.float(), batch.mask, batch.mask)
            losses["decoder"] = torch.nanmean(dec)
            losses["total"] = losses["main"] + self.loss_cfg.decoder_weight * losses["decoder"]
        else:
            losses["total"] = losses["main"]
        return losses

    def training_step(self, batch, batch_idx: int):
        losses = self._losses(batch)
        n_sets = batch.ctrl.shape[0]
        self.log("train_loss", losses["total"], prog_bar=True, batch_size=n_sets)
        if "decoder" in losses:
            self.log("train/decoder_loss", losses["decoder"], batch_size=n_sets)
            self.log("train/main_loss", losses["main"], batch_size=n_sets)
        return losses["total"]

    def validation_step(self, batch, batch_idx: int):
        losses = self._losses(batch)
        n_sets = batch.ctrl.shape[0]
        self.log("val_loss", losses["main"], prog_bar=True, batch_size=n_sets, sync_dist=True)
        if "decoder" in losses:
            self.log("val/decoder_loss", losses["decoder"], batch_size=n_sets, sync_dist=True)
            self.log("val/total_loss", losses["total"], batch_size=n_sets, sync_dist=True)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None
        opt = torch.optim.AdamW(params, lr=self.optim_cfg.lr, weight_decay=self.optim_cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, self.optim_cfg))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
