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

from state_core.models.losses import LossConfig


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    max_steps: int = 1000
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    gradient_clip_val: float | None = 10.0  # global L2 norm; applied here so the fused optimizer can be used
    fused: bool = True  # fused AdamW (not with fp16 loss scaling, whose scaler must see per-tensor grads)


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
        self.loss_fn = loss.build()

    def forward(self, batch):  # noqa: D401 - Lightning convention
        return self.model(batch.ctrl, batch.pert_idx, batch.batch_idx, batch.mask, batch.cell_type_idx)

    def _losses(self, batch) -> dict[str, torch.Tensor]:
        out = self(batch)
        # Losses in fp32 whatever the autocast: under bf16 the pairwise distances of the energy loss lose
        # their small differences (logged losses were quantised to 1/64).
        with torch.autocast(device_type=out.latent.device.type, enabled=False):
            return self._loss_terms(out, batch)

    def _loss_terms(self, out, batch) -> dict[str, torch.Tensor]:  # noqa: ANN001 - STOutput, CellSetBatch
        main = self.loss_fn(out.latent.float(), batch.target.float(), batch.mask, batch.mask)  # [B]
        losses = {"main": torch.nanmean(main)}
        total = losses["main"]
        genes = out.genes
        decoder = getattr(self.model, "gene_decoder", None)
        if genes is not None and self.loss_cfg.detach_decoder and decoder is not None:
            genes = decoder(out.latent.detach().float())  # decoder learns without moving the transition model
        target_genes = getattr(batch, "target_genes", None)
        if genes is not None and target_genes is not None:
            losses["decoder"] = torch.nanmean(self.loss_fn(genes.float(), target_genes.float(), batch.mask, batch.mask))
            total = total + self.loss_cfg.decoder_weight * losses["decoder"]
        if self.loss_cfg.regularization > 0 and out.latent.shape[-1] == batch.ctrl.shape[-1]:
            real = batch.mask[..., None].to(out.latent.dtype)  # [B, S, 1]
            l1 = ((out.latent.float() - batch.ctrl.float()).abs() * real.float()).sum() / (
                real.sum() * out.latent.shape[-1]
            ).clamp_min(1)
            losses["l1_regularization"] = l1
            total = total + self.loss_cfg.regularization * l1
        losses["total"] = total
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

    # Dropout draws from the global torch RNG; keep its state in checkpoints so that a resumed run
    # continues exactly like an uninterrupted one (the data plan is seeded separately).
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Applied at the first training batch: Lightning still sets up loops and loaders after loading.
        self._pending_rng = checkpoint.get("rng_state")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        state = getattr(self, "_pending_rng", None)
        if state:
            torch.set_rng_state(state["torch"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
            self._pending_rng = None

    def on_before_optimizer_step(self, optimizer) -> None:
        # Clipping here rather than through the Trainer: Lightning refuses to clip for fused optimizers under
        # mixed precision, although with bf16 there is no loss scaling and the gradients are already final.
        if self.optim_cfg.gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim_cfg.gradient_clip_val)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None
        # The fused kernel updates all parameters in one pass (4x faster than the per-tensor loop on CPU).
        fused = self.optim_cfg.fused and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        lr = self.optim_cfg.lr
        groups = (
            [{"params": [p for p in ps if p.requires_grad], "lr": lr * scale} for ps, scale in self.model.lr_groups()]
            if hasattr(self.model, "lr_groups")
            else [{"params": params}]
        )
        opt = torch.optim.AdamW(groups, lr=lr, weight_decay=self.optim_cfg.weight_decay, fused=fused)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, self.optim_cfg))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
