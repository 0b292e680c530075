"""`state emb fit`: train an SE model with Lightning on the h5ad files of a config.

Objective (as the original): the decoder predicts the log expression of P positive, N negative and S
batch-shared task genes from [gene embedding, cell embedding, read depth, dataset embedding]; loss =
per-cell L2 + per-shared-gene L2 ("tabular") or MSE, plus the dataset-classification cross-entropy.

Fixed against the original: the learning-rate schedule (linear warm-up from `start_factor`, then one cosine
down to `min_lr_fraction`) is stepped exactly once per optimizer step over the real number of steps, and
never in validation.

Output folder:
    <output_dir>/model/            SE model folder (see `state_core.embed.artifact`)
    <output_dir>/checkpoints/      Lightning checkpoints (last.ckpt: resume)
    <output_dir>/fit_config.yaml   the resolved config
    <output_dir>/version_<n>/metrics.csv   one version per (resumed) run
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from state_core.data.h5ad import read_var_names
from state_core.embed.artifact import InputConvention, SEMeta, save_se_model, weights_digest
from state_core.embed.config import OptimizerSection, SEFitConfig
from state_core.embed.genes import GeneTable, check_coverage, load_gene_table, map_gene_names
from state_core.embed.rows import ExpressionRows
from state_core.embed.sentences import SentenceSpec, TaskSpec
from state_core.embed.training_data import SECollator, SentenceDataset, SourceFile, split_cells
from state_core.models.se import SEConfig, StateEmbeddingModel, rda_from_targets

log = logging.getLogger(__name__)


def lr_factor(step: int, total_steps: int, opt: OptimizerSection) -> float:
    """Multiplier of max_lr at optimizer step `step`: linear warm-up, then a single cosine to the floor."""
    warmup = max(1, int(round(opt.warmup_fraction * total_steps)))
    if step < warmup:
        return opt.start_factor + (1.0 - opt.start_factor) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    floor = opt.min_lr_fraction
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def tabular_loss(pred: torch.Tensor, target: torch.Tensor, n_shared: int) -> torch.Tensor:
    """mean over cells of ||pred_c - y_c|| over its genes + mean over shared genes of ||pred_g - y_g|| over cells."""
    diff = (pred - target).float()  # [B, T]
    per_cell = diff.norm(dim=1).mean()
    if n_shared == 0:
        return per_cell
    return per_cell + diff[:, -n_shared:].norm(dim=0).mean()


class SELightning(L.LightningModule):
    def __init__(self, model: StateEmbeddingModel, cfg: SEFitConfig, n_shared: int):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.n_shared = n_shared

    def shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self.model(batch["gene_ids"], batch["count_feat"])
        targets = batch["targets"]  # [B, T]
        gene_emb = self.model.decoder_gene_embedding(batch["task_ids"])  # [B, T, d]
        pred = self.model.decode(out, gene_emb, rda_from_targets(targets))  # [B, T]
        if self.cfg.loss.name == "tabular":
            recon = tabular_loss(pred, targets, self.n_shared)
        else:
            recon = F.mse_loss(pred.float(), targets.float())
        ds_loss = F.cross_entropy(self.model.classify_dataset(out).float(), batch["dataset_index"])
        b = targets.shape[0]
        self.log(f"{stage}/recon_loss", recon, batch_size=b, sync_dist=stage == "val")
        self.log(f"{stage}/dataset_loss", ds_loss, batch_size=b, sync_dist=stage == "val")
        if stage == "val":
            return recon
        loss = recon + self.cfg.loss.dataset_weight * ds_loss
        self.log("train/loss", loss, batch_size=b, prog_bar=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        if loader is not None and isinstance(loader.dataset, SentenceDataset):
            loader.dataset.epoch = self.current_epoch

    def configure_optimizers(self):
        opt_cfg = self.cfg.optimizer
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=opt_cfg.max_lr, weight_decay=opt_cfg.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, opt_cfg))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1}}


def open_sources(cfg: SEFitConfig, table: GeneTable) -> list[SourceFile]:
    index = table.index()
    sources = []
    for ds_index, entry in enumerate(sorted(cfg.datasets, key=lambda d: d.name)):
        rows = ExpressionRows(entry.path)
        names = read_var_names(entry.path, entry.gene_column)
        source = f"var[{entry.gene_column!r}]" if entry.gene_column else "var_names"
        mapping = map_gene_names(names, index, source)
        check_coverage(mapping, cfg.data.min_gene_coverage, f"dataset {entry.name!r} ({entry.path})")
        sources.append(SourceFile(entry.name, rows, mapping, entry.input_kind or cfg.data.input_kind, ds_index))
    return sources


def se_config(cfg: SEFitConfig, token_dim: int) -> SEConfig:
    m = cfg.model
    return SEConfig(
        token_dim=token_dim,
        d_model=m.d_model,
        d_hid=m.d_hid,
        nhead=m.nhead,
        nlayers=m.nlayers,
        output_dim=m.output_dim,
        dropout=m.dropout,
        num_datasets=len(cfg.datasets),
    )


def build_trainer(cfg: SEFitConfig, out: Path) -> L.Trainer:
    t = cfg.trainer
    precision = t.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() else "32-true"
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=t.checkpoint_every_n_steps
    )
    return L.Trainer(
        max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=precision,
        gradient_clip_val=cfg.optimizer.max_grad_norm,
        accumulate_grad_batches=cfg.optimizer.gradient_accumulation_steps,
        val_check_interval=t.val_check_interval,
        callbacks=[checkpoint],
        logger=CSVLogger(str(out), name=""),
        default_root_dir=str(out),
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def fit_se(cfg: SEFitConfig) -> Path:
    """Train; return the SE model folder `<output_dir>/model`."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    L.seed_everything(cfg.seed, workers=True)
    table = load_gene_table(cfg.gene_embeddings)
    sources = open_sources(cfg, table)
    sentence = SentenceSpec(pad_length=cfg.data.pad_length, compat=cfg.data.compat)
    n_shared = cfg.data.shared if cfg.loss.name == "tabular" else 0
    task = TaskSpec(positives=cfg.data.positives, negatives=cfg.data.negatives, shared=n_shared)
    train_cells, val_cells = split_cells([s.rows.n_rows for s in sources], cfg.data.val_fraction, cfg.seed)
    collate = SECollator(vocab_size=len(table.names), n_shared=n_shared, seed=cfg.seed)

    def loader(cells, shuffle: bool) -> DataLoader:
        data = SentenceDataset(sources, cells, sentence, task, cfg.data.target_sum, cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        return DataLoader(
            data,
            batch_size=cfg.data.batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=cfg.data.num_workers,
            generator=gen,
            drop_last=False,
        )

    model = StateEmbeddingModel(se_config(cfg, table.token_dim), table.vectors)
    module = SELightning(model, cfg, n_shared)
    trainer = build_trainer(cfg, out)
    last = out / "checkpoints" / "last.ckpt"
    resume = str(last) if cfg.trainer.resume and last.is_file() else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(
        module,
        loader(train_cells, True),
        loader(val_cells, False) if val_cells else None,
        ckpt_path=resume,
        weights_only=True,
    )
    trainer.save_checkpoint(last)  # a run stopped by max_steps mid-epoch is resumable from where it ended
    for s in sources:
        s.rows.close()
    model = module.model.cpu().float().eval()
    meta = SEMeta(
        model_id=f"{out.name}-{weights_digest(model)}",
        config=model.cfg,
        sentence=sentence,
        convention=InputConvention(input_kind=cfg.data.input_kind, target_sum=cfg.data.target_sum),
        vocab_digest=table.digest(),
    )
    if trainer.is_global_zero:
        save_se_model(out / "model", model, meta, table)
    return out / "model"
