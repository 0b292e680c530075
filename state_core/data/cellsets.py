"""Cell-set batches: the cells of one split (labels + feature stores) and the gather of one batch.

`load_split` reads the labels of a split's rows, sorts the cells into store order, builds the group layout
(sampler.py) and the feature stores (feature_store.py). `SplitData.batch(plan, i)` turns batch `i` of a
`SetPlan` into a `CellSetBatch`: one vectorised take for the targets, one for the controls, one per gene
target. No per-cell Python.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from state_core.data.feature_store import FeatureStore, FileRows, build_feature_store
from state_core.data.sampler import PAD, GroupLayout, SetPlan, SplitCells, build_layout, draw_controls, store_order
from state_core.data.vocab import Vocab, gene_target_key
from state_core.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class CellSetBatch:
    """One batch of B cell sets of S cells. Padding (eval only) has mask False and cell_id -1."""

    ctrl: torch.Tensor  # [B, S, D_in] features of the mapped control cells (model input)
    target: torch.Tensor  # [B, S, D_out] features of the real cells (training target)
    pert_idx: torch.Tensor  # [B] int64 perturbation index (vocab order)
    cell_type_idx: torch.Tensor  # [B] int64
    batch_idx: torch.Tensor  # [B, S] int64 batch label of each target cell
    mask: torch.Tensor  # [B, S] bool, True = real cell
    cell_id: torch.Tensor  # [B, S] int64 global row id (see CellSetData.row_labels), -1 = padding
    target_genes: torch.Tensor | None = None  # [B, S, G] gene-space targets when output_space needs them

    def to(self, device: torch.device | str, non_blocking: bool = False, **_: object) -> "CellSetBatch":
        """Copy to `device`; Lightning's default batch transfer calls this."""
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return replace(self, **moved)

    def pin_memory(self) -> "CellSetBatch":
        """Used by DataLoader(pin_memory=True)."""
        return replace(
            self,
            **{f.name: v.pin_memory() for f in fields(self) if isinstance(v := getattr(self, f.name), torch.Tensor)},
        )

    @property
    def n_sets(self) -> int:
        return int(self.ctrl.shape[0])


@dataclass(frozen=True, eq=False)
class SplitData:
    """Everything needed to build batches of one split."""

    split: str
    cells: SplitCells  # labels per store position
    cell_id: np.ndarray  # [N] global row id per store position
    layout: GroupLayout
    features: FeatureStore  # obsm[embed_key] or X rows
    genes: FeatureStore | None  # gene-space target rows, when separate from `features`
    as_float32: bool = True  # False: batches keep the store dtype (float16), converted on the device

    def batch(self, plan: SetPlan, i: int, seed: int) -> CellSetBatch:
        """Gather batch `i` of `plan`."""
        sets = plan.batch_sets(i)
        members = plan.members[sets]  # [b, S]
        mask = members != PAD
        pos = np.where(mask, members, members[:, :1].clip(min=0))  # padding points at a real row of its set
        ctrl = draw_controls(self.layout, plan, sets, seed)  # [b, S]
        b, s = members.shape
        groups = plan.group[sets]
        target = self.features.gather(pos, self.as_float32).reshape(b, s, -1)  # [b, S, D]
        if not mask.all():
            target[~mask] = 0.0
        out = CellSetBatch(
            ctrl=torch.from_numpy(self.features.gather(ctrl, self.as_float32).reshape(b, s, -1)),  # [b, S, D]
            target=torch.from_numpy(target),
            pert_idx=torch.from_numpy(self.layout.pert[groups]),
            cell_type_idx=torch.from_numpy(self.layout.cell_type[groups]),
            batch_idx=torch.from_numpy(np.where(mask, self.cells.batch[pos], 0)),
            mask=torch.from_numpy(mask),
            cell_id=torch.from_numpy(np.where(mask, self.cell_id[pos], -1)),
        )
        if self.genes is not None:
            genes = self.genes.gather(pos, self.as_float32).reshape(b, s, -1)  # [b, S, G]
            if not mask.all():
                genes[~mask] = 0.0
            out.target_genes = torch.from_numpy(genes)
        return out


@dataclass(frozen=True, eq=False)
class FileLabelsInVocab:
    """Vocabulary indices of every row of one file (-1 where a label is missing or unused)."""

    dataset: str
    path: str
    n_rows: int
    pert: np.ndarray  # [n_rows]
    cell_type: np.ndarray
    batch: np.ndarray


def _vocab_index_per_row(path: str, column: str, used: np.ndarray, vocab: Vocab, kind: str) -> tuple[np.ndarray, int]:
    """Map a file's codes to vocab indices for the used rows only (unused categories may be unknown)."""
    from state_core.data.h5ad import read_obs_labels

    labels = read_obs_labels(path, column)
    codes = labels.codes
    used_codes = np.unique(codes[used])
    if used_codes.size and used_codes[0] < 0:
        raise DataError(f"{path}: obs column {column!r} is empty for some used rows; fill or drop those cells")
    table = np.full(labels.categories.size + 1, -1, dtype=np.int64)  # last slot: missing code -1
    table[used_codes] = vocab.index(kind, labels.categories[used_codes], where=f"{path} obs[{column!r}]")
    return table[codes], int(codes.shape[0])


def read_file_labels(dataset: str, path: str, used: np.ndarray, vocab: Vocab) -> FileLabelsInVocab:
    pert, n_rows = _vocab_index_per_row(path, vocab.pert_col, used, vocab, "perturbation")
    cell_type, _ = _vocab_index_per_row(path, vocab.cell_type_key, used, vocab, "cell_type")
    if vocab.batch_col:
        batch, _ = _vocab_index_per_row(path, vocab.batch_col, used, vocab, "batch")
    else:
        batch = np.zeros(n_rows, dtype=np.int64)
    return FileLabelsInVocab(dataset, path, n_rows, pert, cell_type, batch)


@dataclass(frozen=True)
class StoreSettings:
    """How feature rows are held: dtype, memory budget and where the on-disk store goes above it."""

    dtype: str = "float32"  # float16 halves memory; batches are still float32 unless batch_in_store_dtype
    batch_in_store_dtype: bool = False  # True: float16 batches, cast on the GPU (cheaper than on the CPU)
    memory_budget_bytes: int = 8 * 2**30
    cache_dir: str | None = None


def load_split(
    split: str,
    manifest_rows: Sequence[np.ndarray],
    files: Sequence[FileLabelsInVocab],
    file_offsets: np.ndarray,
    vocab: Vocab,
    *,
    group_by_batch: bool,
    store: StoreSettings,
) -> SplitData:
    """Labels, layout and feature stores of one split (`manifest_rows[f]` = sorted rows of file f)."""
    parts = {"file_idx": [], "row": [], "pert": [], "cell_type": [], "batch": []}
    for f, (rows, labels) in enumerate(zip(manifest_rows, files)):
        parts["file_idx"].append(np.full(rows.size, f, dtype=np.int64))
        parts["row"].append(rows)
        parts["pert"].append(labels.pert[rows])
        parts["cell_type"].append(labels.cell_type[rows])
        parts["batch"].append(labels.batch[rows])
    cat = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()}
    order = store_order(cat["file_idx"], cat["cell_type"], cat["pert"], cat["batch"], cat["row"])
    dest = np.empty(order.size, dtype=np.int64)
    dest[order] = np.arange(order.size)  # store position of each (file, row) in manifest order
    cells = SplitCells(
        file_idx=cat["file_idx"][order],
        cell_type=cat["cell_type"][order],
        pert=cat["pert"][order],
        batch=cat["batch"][order],
        is_control=cat["pert"][order] == vocab.control_index,
    )
    layout = build_layout(
        cells,
        group_by_batch=group_by_batch,
        split=split,
        file_names=[f.path for f in files],
        cell_type_names=vocab.cell_types,
    )
    bounds = np.cumsum([0] + [r.size for r in manifest_rows])
    sources = [
        FileRows(path=f.path, rows=rows, dest=dest[bounds[i] : bounds[i + 1]])
        for i, (f, rows) in enumerate(zip(files, manifest_rows))
        if rows.size
    ]
    kw = dict(dtype=store.dtype, memory_budget_bytes=store.memory_budget_bytes, cache_dir=store.cache_dir)
    features = build_feature_store(sources, vocab.embed_key, **kw)
    gene_key = gene_target_key(vocab.embed_key, vocab.output_space)
    genes = build_feature_store(sources, gene_key, **kw) if gene_key else None
    return SplitData(
        split=split,
        cells=cells,
        cell_id=(file_offsets[cat["file_idx"]] + cat["row"])[order],
        layout=layout,
        features=features,
        genes=genes,
        as_float32=not store.batch_in_store_dtype,
    )


def row_labels_frame(
    cell_ids: np.ndarray, files: Sequence[FileLabelsInVocab], file_offsets: np.ndarray, vocab: Vocab
) -> pd.DataFrame:
    """obs-style labels of global row ids: pert_col, cell_type_key, batch_col, dataset, source file and row."""
    ids = np.asarray(cell_ids, dtype=np.int64)
    total = int(file_offsets[-1]) if len(file_offsets) else 0
    if ids.size and (ids.min() < 0 or ids.max() >= total):
        raise DataError(f"cell ids must be in [0, {total}); got values from {ids.min()} to {ids.max()}")
    f = np.searchsorted(file_offsets, ids, side="right") - 1
    row = ids - file_offsets[f]
    pert = np.concatenate([x.pert for x in files])[ids]
    ct = np.concatenate([x.cell_type for x in files])[ids]
    batch = np.concatenate([x.batch for x in files])[ids]
    if ids.size and (pert.min() < 0 or ct.min() < 0):
        raise DataError("some cell ids point at rows that belong to no split of the manifest")
    frame = {
        vocab.pert_col: np.asarray(vocab.perturbations, dtype=object)[pert],
        vocab.cell_type_key: np.asarray(vocab.cell_types, dtype=object)[ct],
    }
    if vocab.batch_col:
        frame[vocab.batch_col] = np.asarray(vocab.batches, dtype=object)[batch]
    frame["dataset"] = np.asarray([x.dataset for x in files], dtype=object)[f]
    frame["source_file"] = np.asarray([x.path for x in files], dtype=object)[f]
    frame["source_row"] = row
    return pd.DataFrame(frame, index=pd.Index(ids.astype(str), name="cell_id"))
