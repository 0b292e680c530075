"""Training data for SE: cells from several h5ad files -> sentences, task genes and targets.

A cell's randomness (sentence, task genes) comes from a generator seeded by (seed, epoch, global row), so
runs repeat exactly and resumed runs see the same data. Datasets are indexed in sorted name order (the
dataset-classifier label), as the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from state_core.embed.genes import GeneMapping
from state_core.embed.rows import ExpressionRows
from state_core.embed.sentences import (
    CellGenes,
    SentenceSpec,
    TaskSpec,
    build_sentence,
    sample_task_genes,
    shared_gene_targets,
    to_log_expression,
)

EPOCH_STRIDE = 1_000_003  # separates the seeds of different epochs


@dataclass
class SourceFile:
    name: str
    rows: ExpressionRows
    mapping: GeneMapping
    input_kind: str
    dataset_index: int  # classifier label


@dataclass(frozen=True)
class CellRef:
    source: int  # index into the source list
    row: int  # row in that file
    global_index: int  # seeds the cell's generator


class SentenceDataset(Dataset):
    def __init__(
        self,
        sources: list[SourceFile],
        cells: list[CellRef],
        sentence: SentenceSpec,
        task: TaskSpec,
        target_sum: float | None,
        seed: int,
    ):
        self.sources, self.cells = sources, cells
        self.sentence, self.task = sentence, task
        self.target_sum, self.seed = target_sum, seed
        self.epoch = 0  # set by the training module at every epoch start

    def __len__(self) -> int:
        return len(self.cells)

    def rng(self, global_index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed + EPOCH_STRIDE * self.epoch, global_index])

    def __getitem__(self, i: int) -> dict:
        ref = self.cells[i]
        src = self.sources[ref.source]
        row = to_log_expression(src.rows.read_row(ref.row)[None, :], src.input_kind, self.target_sum)[0]
        known = src.mapping.column_vocab_ids >= 0
        cell = CellGenes(vocab_ids=src.mapping.column_vocab_ids[known], log_expr=row[known])
        rng = self.rng(ref.global_index)
        gene_ids, count_feat = build_sentence(cell, rng, self.sentence)
        task_ids, targets = sample_task_genes(cell, rng, self.task, self.sentence.compat)
        return {
            "gene_ids": gene_ids,
            "count_feat": count_feat,
            "task_ids": task_ids,
            "targets": targets,
            "dataset_index": src.dataset_index,
            "cell": cell,
            "global_index": ref.global_index,
        }


@dataclass
class SECollator:
    """Stacks cells; draws the batch's shared genes S (the same for every cell) for the tabular loss."""

    vocab_size: int
    n_shared: int
    seed: int

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        task_ids = np.stack([it["task_ids"] for it in items])  # [B, P+N]
        targets = np.stack([it["targets"] for it in items])  # [B, P+N]
        if self.n_shared:
            rng = np.random.default_rng([self.seed, 7, int(items[0]["global_index"])])
            shared = rng.integers(0, self.vocab_size, size=self.n_shared)  # [S]
            shared_targets = shared_gene_targets([it["cell"] for it in items], shared)  # [B, S]
            task_ids = np.concatenate([task_ids, np.broadcast_to(shared, (len(items), self.n_shared))], axis=1)
            targets = np.concatenate([targets, shared_targets], axis=1)
        return {
            "gene_ids": torch.from_numpy(np.stack([it["gene_ids"] for it in items])),  # [B, L]
            "count_feat": torch.from_numpy(np.stack([it["count_feat"] for it in items])),  # [B, L]
            "task_ids": torch.from_numpy(np.ascontiguousarray(task_ids)),  # [B, T]
            "targets": torch.from_numpy(np.ascontiguousarray(targets)),  # [B, T]
            "dataset_index": torch.tensor([it["dataset_index"] for it in items], dtype=torch.long),  # [B]
        }


def split_cells(n_rows_per_source: list[int], val_fraction: float, seed: int) -> tuple[list[CellRef], list[CellRef]]:
    """A seeded per-file train/val split of the rows."""
    train, val = [], []
    offset = 0
    for s, n in enumerate(n_rows_per_source):
        perm = np.random.default_rng([seed, 11, s]).permutation(n)
        n_val = int(round(val_fraction * n)) if n > 1 else 0
        val_rows = set(perm[:n_val].tolist())
        for r in range(n):
            (val if r in val_rows else train).append(CellRef(s, r, offset + r))
        offset += n
    return train, val
