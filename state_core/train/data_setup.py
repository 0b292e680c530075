"""The data side of a run: vocabulary (built once, then frozen), perturbation features, dims, data module.

`read_run_inputs` gives what the model's resolved config depends on (dims, features); the data module is
built after it, with the `cell_set_len` of that resolved config (`state_core.models.presets`), so the
loader and the model use one value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from state_core.config.train_config import TrainConfig
from state_core.data.cellsets import StoreSettings
from state_core.data.datamodule import CellSetDataModule, EpochBatchSampler
from state_core.data.splits import SplitManifest
from state_core.data.vocab import Vocab, build_vocab, load_perturbation_features


class ResumableEpochSampler(EpochBatchSampler):
    """EpochBatchSampler that starts an epoch at batch `skip_fn()` (to resume a run killed mid-epoch).

    The skip is read lazily, when the first batch of the pass is requested: Lightning creates the iterator
    before it restores the loop position.
    """

    def __init__(self, n_batches: int, skip_fn: Callable[[], int]):
        super().__init__(n_batches)
        self.skip_fn = skip_fn

    def __iter__(self):
        epoch = self.epoch
        self.epoch = epoch + 1
        for i in range(min(self.n_batches, self.skip_fn()), self.n_batches):
            yield (epoch, i)


def _rewrap(base: DataLoader, sampler=None) -> DataLoader:  # noqa: ANN001
    # A private generator: creating a DataLoader iterator otherwise draws from the global torch RNG, which
    # would shift the dropout stream depending on when validation runs (and break exact resume).
    return DataLoader(
        base.dataset,
        batch_size=None,
        sampler=sampler or base.sampler,
        collate_fn=base.collate_fn,
        num_workers=base.num_workers,
        persistent_workers=base.persistent_workers,
        pin_memory=base.pin_memory,
        generator=torch.Generator(),
    )


class TrainingDataModule(CellSetDataModule):
    """The cell-set data module with loaders that resume mid-epoch exactly where a killed run stopped."""

    def _batches_done_this_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        if trainer is None or self._train_sampler is None:
            return 0
        # Every epoch has the same number of batches, so the restored global step locates the batch.
        return max(0, trainer.global_step - trainer.current_epoch * self._train_sampler.n_batches)

    def train_dataloader(self) -> DataLoader:
        base = super().train_dataloader()
        sampler = ResumableEpochSampler(len(base.sampler), self._batches_done_this_epoch)
        self._train_sampler = sampler
        return _rewrap(base, sampler)

    def val_dataloader(self):
        base = super().val_dataloader()
        return _rewrap(base) if isinstance(base, DataLoader) else base


@dataclass(frozen=True)
class RunInputs:
    """What the data decides before any model exists: labels, widths, perturbation features."""

    manifest: SplitManifest
    vocab: Vocab
    input_dim: int
    output_dim: int
    gene_dim: int | None
    pert_features: np.ndarray | None  # [n_pert, P] from the features file; None = one-hot
    has_val: bool


@dataclass(frozen=True)
class RunData(RunInputs):
    """The inputs plus the data module, built at the model's resolved `cell_set_len`."""

    datamodule: CellSetDataModule


def build_run_vocab(cfg: TrainConfig, manifest: SplitManifest) -> Vocab:
    """The vocabulary of a new run, in memory (the caller saves it once the run folder exists)."""
    kw = cfg.data.kwargs
    return build_vocab(
        manifest,
        pert_col=kw.pert_col,
        cell_type_key=kw.cell_type_key,
        batch_col=kw.batch_col,
        control_pert=kw.control_pert,
        embed_key=kw.embed_key or "X",
        output_space=kw.output_space,
        perturbation_features_file=kw.perturbation_features_file,
    )


def read_run_inputs(cfg: TrainConfig, manifest: SplitManifest, vocab: Vocab | Path) -> RunInputs:
    """Dims and perturbation features for `vocab` (or the vocab.json at that path: a resumed or finished run
    keeps its label order)."""
    kw = cfg.data.kwargs
    if not isinstance(vocab, Vocab):
        vocab = Vocab.load(vocab)
    features = (
        load_perturbation_features(kw.perturbation_features_file, vocab.perturbations, vocab.control_pert)
        if kw.perturbation_features_file
        else None
    )
    width = len(vocab.feature_names)
    gene_dim = (
        len(vocab.gene_names) if vocab.gene_names and tuple(vocab.gene_names) != tuple(vocab.feature_names) else None
    )
    has_val = any(len(f.val) for f in manifest.files)
    return RunInputs(
        manifest=manifest,
        vocab=vocab,
        input_dim=width,
        output_dim=width,
        gene_dim=gene_dim,
        pert_features=features,
        has_val=has_val,
    )


def with_datamodule(cfg: TrainConfig, inputs: RunInputs, cell_set_len: int) -> RunData:
    """Add the data module; `cell_set_len` is the resolved model config's (`STConfig.cell_set_len`)."""
    kw = cfg.data.kwargs
    dm = TrainingDataModule(
        inputs.manifest,
        inputs.vocab,
        cell_set_len=cell_set_len,
        batch_size=cfg.training.batch_size,
        seed=cfg.training.train_seed,
        basal_mapping_strategy=kw.basal_mapping_strategy,
        should_yield_control_cells=kw.should_yield_control_cells,
        num_workers=kw.num_workers,
        store=StoreSettings(memory_budget_bytes=int(kw.memory_budget_gb * 2**30)),
    )
    return RunData(**{f.name: getattr(inputs, f.name) for f in fields(RunInputs)}, datamodule=dm)


def prepare_run_data(cfg: TrainConfig, manifest: SplitManifest, vocab: Vocab | Path, cell_set_len: int) -> RunData:
    """Inputs and data module in one step, for a run whose model config is already resolved (predict)."""
    return with_datamodule(cfg, read_run_inputs(cfg, manifest, vocab), cell_set_len)
