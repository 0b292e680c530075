"""`train_st(config) -> run_dir`: split, vocabularies, data module, model, Lightning fit, run folder.

CPU or GPU is chosen automatically; on GPU the default precision is bf16 autocast. `training.devices` and
`training.strategy` go to the Lightning Trainer as given. A killed run resumes from
`checkpoints/last.ckpt` when started again with the same `output_dir`/`name`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from state_core.config.experiment import ObsColumns
from state_core.config.train_config import TrainConfig, load_config, save_config
from state_core.data.splits import SplitManifest, run_split
from state_core.errors import ArtifactError, ConfigError, Problem
from state_core.train.data_setup import RunData, prepare_run_data
from state_core.train.model_setup import build_run_model
from state_core.train.module import OptimConfig, PerturbationTrainingModule
from state_core.train.run_folder import (CHECKPOINT_DIR, CONFIG_FILE, SPLIT_DIR, VOCAB_FILE, save_model)

log = logging.getLogger(__name__)


def _columns(cfg: TrainConfig) -> ObsColumns:
    kw = cfg.data.kwargs
    return ObsColumns(pert_col=kw.pert_col, cell_type_key=kw.cell_type_key, batch_col=kw.batch_col,
                      control_pert=kw.control_pert)


def _manifest(cfg: TrainConfig, run_dir: Path) -> SplitManifest:
    kw = cfg.data.kwargs
    if (run_dir / SPLIT_DIR / "split_manifest.npz").exists():
        return SplitManifest.load(run_dir / SPLIT_DIR)  # resume: the split is part of the run
    if kw.split_dir:
        manifest = SplitManifest.load(Path(kw.split_dir))
        manifest.save(run_dir / SPLIT_DIR)
        return manifest
    return run_split(kw.toml_config_path, run_dir / SPLIT_DIR, _columns(cfg), kw.split_seed)


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (AVX512-BF16 or AMX), where oneDNN runs bf16 matmuls
    about twice as fast as fp32 (measured 1.8x for state_sm training on a 2-core AMD EPYC)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """`auto`: bf16 autocast (weights, norms and losses stay fp32) on GPUs and on CPUs with fast bf16
    matmuls, full fp32 elsewhere. Anything else is passed to Lightning as given."""
    if precision != "auto":
        return precision
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return "bf16-mixed" if on_gpu or cpu_has_fast_bf16() else "32-true"


def _precision(cfg: TrainConfig) -> str:
    return resolve_precision(cfg.training.precision, cfg.training.accelerator)


def _prepare_folder(cfg: TrainConfig) -> tuple[Path, Path | None]:
    """Create the run folder; returns it and the checkpoint to resume from (if any)."""
    run_dir = cfg.run_dir
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if run_dir.exists() and cfg.overwrite:
        shutil.rmtree(run_dir)
    elif last.exists():
        saved = load_config(run_dir / CONFIG_FILE)
        if saved.model != cfg.model or saved.data != cfg.data:
            raise ArtifactError(f"{run_dir} holds a run with a different model/data config; resume needs the same "
                                f"config (fix: pass overwrite=true to start over, or a new name=...)")
        log.info("resuming %s from %s", run_dir, last)
        return run_dir, last
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, None


def _trainer(cfg: TrainConfig, run_dir: Path, has_val: bool) -> pl.Trainer:
    t = cfg.training
    ckpt_dir = run_dir / CHECKPOINT_DIR
    # No version counter: a resumed run must keep overwriting last.ckpt (not write last-v1.ckpt), or the
    # next resume after another preemption would start from the stale first checkpoint again.
    periodic = ModelCheckpoint(dirpath=ckpt_dir, filename="step={step}", auto_insert_metric_name=False,
                               every_n_train_steps=t.ckpt_every_n_steps, save_top_k=-1, save_last=True,
                               enable_version_counter=False)
    callbacks: list[pl.Callback] = [periodic]
    if has_val:
        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="step={step}-val_loss={val_loss:.4f}",
                                         auto_insert_metric_name=False, monitor="val_loss", mode="min",
                                         save_top_k=1))
    loggers: list = [CSVLogger(save_dir=str(run_dir), name="", version="version_0")]
    try:
        if cfg.use_tensorboard:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard"))
        if cfg.use_wandb:
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=cfg.wandb.project, entity=cfg.wandb.entity, tags=list(cfg.wandb.tags),
                                       name=cfg.name, save_dir=cfg.wandb.local_wandb_dir or str(run_dir)))
    except ModuleNotFoundError as err:
        key = "use_tensorboard" if "tensorboard" in str(err).lower() else "use_wandb"
        extra = "tensorboard" if key == "use_tensorboard" else "wandb"
        raise ConfigError("state tx train config", Problem(key, f"is true but {err}",
                                                           f"pip install 'state-core[{extra}]' or set {key}=false")) from None
    return pl.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, precision=_precision(cfg),
        max_steps=t.max_steps, max_epochs=-1, val_check_interval=t.val_freq if has_val else None,
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches if has_val else 0,
        num_sanity_val_steps=0, callbacks=callbacks,
        logger=loggers, enable_progress_bar=t.progress_bar, log_every_n_steps=min(50, t.max_steps),
        default_root_dir=str(run_dir), enable_model_summary=False, use_distributed_sampler=False,
    )


def train_st(cfg: TrainConfig) -> Path:
    """Train the configured model (ST preset or baseline); returns the run folder."""
    pl.seed_everything(cfg.training.train_seed, workers=True, verbose=False)
    fresh = not cfg.run_dir.exists() or cfg.overwrite
    run_dir, resume_from = _prepare_folder(cfg)
    try:
        save_config(cfg, run_dir / CONFIG_FILE)
        manifest = _manifest(cfg, run_dir)
        data: RunData = prepare_run_data(cfg, manifest, vocab_path=run_dir / VOCAB_FILE)
        built = build_run_model(cfg, data)
        optim = OptimConfig(lr=cfg.training.lr, weight_decay=cfg.training.weight_decay,
                            lr_schedule=cfg.training.lr_schedule, warmup_steps=cfg.training.warmup_steps,
                            max_steps=cfg.training.max_steps, gradient_clip_val=cfg.training.gradient_clip_val or None,
                            fused=_precision(cfg) not in ("16-mixed", "16"))
        module = PerturbationTrainingModule(built.model, loss=built.loss, optim=optim)
        trainer = _trainer(cfg, run_dir, has_val=data.has_val)
    except Exception:
        if fresh and resume_from is None:
            shutil.rmtree(run_dir, ignore_errors=True)  # a bad TOML or config leaves no half-made run folder
        raise
    if built.requires_training:
        trainer.fit(module, datamodule=data.datamodule, ckpt_path=str(resume_from) if resume_from else None,
                    weights_only=True)
    elif data.has_val:
        trainer.validate(module, datamodule=data.datamodule, verbose=False)
    if trainer.is_global_zero:
        trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / "final.ckpt", weights_only=False)
        save_model(run_dir, built.model, built.kind, built.config)
    log.info("run folder: %s", run_dir)
    return run_dir
