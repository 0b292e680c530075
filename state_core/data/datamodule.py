"""`CellSetDataModule`: the Lightning face of the cell-set loader (train / val / test / predict).

Each loader is a `DataLoader(batch_size=None)` over a dataset whose items are whole `CellSetBatch`es,
driven by `EpochBatchSampler`, which yields `(epoch, batch index)` keys. The plan of an epoch is a pure
function of (seed, split, epoch, rank, world size), so any worker can build any batch, workers return
batches in sampler order, and results are identical for every `num_workers`. `set_epoch` (called by
Lightning, or by hand) picks the epoch; iterating again without it advances to the next epoch.

Under DDP the plan already shards by rank: create the Trainer with `use_distributed_sampler=False`.
Validation uses the val split only: with no val cells the val loader is empty (never the test split).
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Iterator

import lightning.pytorch as pl
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset, Sampler

from state_core.data.cellsets import (
    CellSetBatch,
    FileLabelsInVocab,
    SplitData,
    StoreSettings,
    load_split,
    read_file_labels,
    row_labels_frame,
)
from state_core.data.sampler import STREAMS, SetPlan, eval_plan, train_plan
from state_core.data.vocab import Vocab
from state_core.errors import ConfigError, DataError, Problem

log = logging.getLogger(__name__)
MAPPING_STRATEGIES = ("random", "batch")


class EpochBatchSampler(Sampler):
    """Yields (epoch, batch index) for every batch of an epoch; `set_epoch` picks the epoch."""

    def __init__(self, n_batches: int, epoch: int = 0):
        self.n_batches = n_batches
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        self.epoch = epoch + 1  # the next pass gets a fresh shuffle unless set_epoch (Lightning) says otherwise
        for i in range(self.n_batches):
            yield (epoch, i)


class CellSetDataset(Dataset):
    """Item (epoch, i) = batch i of that epoch's plan. Keeps the last plan built (one per worker)."""

    def __init__(self, data: SplitData, make_plan: Callable[[int], SetPlan], seed: int, resample: bool):
        self.data = data
        self.make_plan = make_plan
        self.seed = seed
        self.resample = resample  # False: one fixed plan (val/test), whatever the epoch
        self._plan: SetPlan | None = None

    def plan(self, epoch: int) -> SetPlan:
        epoch = epoch if self.resample else 0
        if self._plan is None or self._plan.epoch != epoch:
            self._plan = self.make_plan(epoch=epoch)
        return self._plan

    def __getitem__(self, key: tuple[int, int]) -> CellSetBatch:
        epoch, i = key
        return self.data.batch(self.plan(epoch), i, self.seed)


def _keep_batch(batch: CellSetBatch) -> CellSetBatch:
    return batch  # batches are built whole by the dataset; nothing to collate


class CellSetDataModule(pl.LightningDataModule):
    """Train/val/test/predict loaders of cell sets for a split manifest and a run vocabulary."""

    def __init__(
        self,
        manifest,  # noqa: ANN001 - state_core.data.splits.SplitManifest
        vocab: Vocab,
        embed_key: str | None = None,
        output_space: str | None = None,
        *,
        cell_set_len: int,  # no default: a run passes its resolved STConfig.cell_set_len
        batch_size: int = 16,
        seed: int = 42,
        basal_mapping_strategy: str = "random",
        should_yield_control_cells: bool = True,
        drop_last: bool = False,
        eval_val: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        store: StoreSettings = StoreSettings(),
        rank: int = 0,
        world_size: int = 1,
        cache_dir: str | None = None,
    ):
        super().__init__()
        problems = []
        if embed_key is not None and ("X" if embed_key in ("", "X") else embed_key) != vocab.embed_key:
            problems.append(
                Problem(
                    "embed_key",
                    f"{embed_key!r} differs from the vocabulary's {vocab.embed_key!r}",
                    "build the vocabulary with the same embed_key",
                )
            )
        if output_space is not None and output_space != vocab.output_space:
            problems.append(
                Problem(
                    "output_space",
                    f"{output_space!r} differs from the vocabulary's {vocab.output_space!r}",
                    "build the vocabulary with the same output_space",
                )
            )
        if basal_mapping_strategy not in MAPPING_STRATEGIES:
            problems.append(
                Problem(
                    "basal_mapping_strategy",
                    f"{basal_mapping_strategy!r} is not supported",
                    f"use one of {', '.join(MAPPING_STRATEGIES)}",
                )
            )
        if cell_set_len < 1 or batch_size < 1:
            problems.append(Problem("cell_set_len/batch_size", f"got {cell_set_len}/{batch_size}", "both must be >= 1"))
        if problems:
            raise ConfigError("cell-set loader", problems)
        self.manifest = manifest
        self.vocab = vocab
        self.cell_set_len = cell_set_len
        self.batch_size = batch_size
        self.seed = seed
        self.basal_mapping_strategy = basal_mapping_strategy
        self.should_yield_control_cells = should_yield_control_cells
        self.drop_last = drop_last
        self.eval_val = eval_val
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.store = store
        self.default_rank, self.default_world_size = rank, world_size
        self.cache_dir = cache_dir  # where gs:// inputs are downloaded
        self._files: list[FileLabelsInVocab] | None = None
        self._offsets: np.ndarray | None = None
        self._splits: dict[str, SplitData] = {}
        self._train_sampler: EpochBatchSampler | None = None

    # -- data -----------------------------------------------------------------------------------------

    def _local_paths(self) -> list[str]:
        from state_core.storage.cache import localize

        return [str(localize(str(f.path), self.cache_dir)) for f in self.manifest.files]

    def _file_labels(self) -> tuple[list[FileLabelsInVocab], np.ndarray]:
        if self._files is None:
            paths = self._local_paths()
            files = []
            for entry, path in zip(self.manifest.files, paths):
                used = np.unique(np.concatenate([entry.train, entry.val, entry.test]).astype(np.int64))
                files.append(read_file_labels(entry.dataset, path, used, self.vocab))
            self._files = files
            self._offsets = np.cumsum([0] + [f.n_rows for f in files]).astype(np.int64)
        return self._files, self._offsets

    def has_split(self, split: str) -> bool:
        return self.manifest.n_cells(split) > 0

    def split_data(self, split: str) -> SplitData:
        """Labels, layout and feature stores of `split` (built once)."""
        if split not in self._splits:
            if not self.has_split(split):
                raise DataError(f"the {split} split of the manifest has no cells; check the experiment TOML")
            files, offsets = self._file_labels()
            self._splits[split] = load_split(
                split,
                [np.asarray(f.rows(split), dtype=np.int64) for f in self.manifest.files],
                files,
                offsets,
                self.vocab,
                group_by_batch=self.basal_mapping_strategy == "batch",
                store=self.store,
            )
        return self._splits[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            if self.has_split(split):
                self.split_data(split)

    @property
    def input_dim(self) -> int:
        return len(self.vocab.feature_names)

    def row_labels(self, cell_ids: np.ndarray) -> pd.DataFrame:
        """obs labels (pert_col, cell_type_key, batch_col, dataset, source_file, source_row) of cell ids."""
        files, offsets = self._file_labels()
        return row_labels_frame(cell_ids, files, offsets, self.vocab)

    # -- plans and loaders --------------------------------------------------------------------------------

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        return self.default_rank, self.default_world_size

    def plan_factory(self, split: str, resample: bool) -> Callable[[int], SetPlan]:
        layout = self.split_data(split).layout
        rank, world_size = self._rank_world()
        common = dict(
            cell_set_len=self.cell_set_len,
            batch_size=self.batch_size,
            rank=rank,
            world_size=world_size,
            include_controls=self.should_yield_control_cells,
            stream=STREAMS[split],
        )
        if resample:
            return functools.partial(train_plan, layout, seed=self.seed, drop_last=self.drop_last, **common)
        return functools.partial(_fixed_eval_plan, layout, **common)

    def _loader(self, split: str, resample: bool) -> DataLoader:
        dataset = CellSetDataset(self.split_data(split), self.plan_factory(split, resample), self.seed, resample)
        sampler = EpochBatchSampler(dataset.plan(0).n_batches)
        if split == "train":
            self._train_sampler = sampler
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=sampler,
            collate_fn=_keep_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0 and split == "train",
            pin_memory=self.pin_memory,
        )

    def set_epoch(self, epoch: int) -> None:
        """Pick the training epoch (the shuffle) for the next pass over train_dataloader()."""
        if self._train_sampler is not None:
            self._train_sampler.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        if not self.has_split("train"):
            raise DataError("the manifest's train split has no cells; check [training] and the dataset paths")
        return self._loader("train", resample=True)

    def val_dataloader(self) -> DataLoader | list:
        if not self.has_split("val"):
            log.info("no val split: validation is skipped (the test split is never used in its place)")
            return []
        if self.eval_val:
            return self._loader("val", resample=False)
        # Train-style sets (resampled to S) drawn once with a fixed seed: comparable across validations.
        dataset = CellSetDataset(self.split_data("val"), self._fixed_train_plan("val"), self.seed, resample=False)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=EpochBatchSampler(dataset.plan(0).n_batches),
            collate_fn=_keep_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def _fixed_train_plan(self, split: str) -> Callable[[int], SetPlan]:
        layout = self.split_data(split).layout
        rank, world_size = self._rank_world()
        return functools.partial(
            train_plan,
            layout,
            cell_set_len=self.cell_set_len,
            batch_size=self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            include_controls=self.should_yield_control_cells,
            stream=STREAMS[split],
        )

    def test_dataloader(self) -> DataLoader | list:
        """Every test cell exactly once, in masked sets of <= cell_set_len cells."""
        return self._loader("test", resample=False) if self.has_split("test") else []

    def predict_dataloader(self) -> DataLoader | list:
        return self.test_dataloader()


def _fixed_eval_plan(layout, epoch: int = 0, **kw) -> SetPlan:  # noqa: ANN001 - epoch is ignored: one plan
    return eval_plan(layout, **kw)
