"""Seeded cell-set plans (pure numpy): which cells form each set, which controls they get, per rank.

The cells of one split live in a feature store sorted by (file, cell type, perturbation, batch, row), so
every group of cells that may share a set is one contiguous range of store positions, and so is every
control pool. A plan is then just integer arrays:

* train plan (`train_plan`): every epoch, each group is shuffled and cut into sets of `S` cells; a short
  tail is completed with other cells of the same group (without replacement when the group has at least S
  cells, with replacement when the whole group is smaller than S). Set order is shuffled and sets are
  dealt to ranks round-robin, each rank getting the same number (wrapping or dropping), then packed
  `batch_size` at a time. Randomness comes from `SeedSequence((seed, stream, epoch))`, so every rank builds
  the same global plan and nothing depends on worker count or PYTHONHASHSEED.
* eval plan (`eval_plan`): no resampling; each group is cut into ceil(n/S) nearly equal chunks, padded to
  S with -1 (mask False), so every cell appears exactly once.
* controls (`draw_controls`): one control per cell, uniform (with replacement) over the pool of its set's
  group, from a counter hash of (seed, stream, epoch, set id, position): the same set gets the same
  controls whichever rank or worker builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from state_core.errors import DataError

PAD = -1
STREAMS = {"train": 0, "val": 1, "test": 2, "predict": 2}
_CONTROL_STREAM = 7  # separates control draws from set-membership draws of the same (seed, epoch)


@dataclass(frozen=True, eq=False)
class SplitCells:
    """Per-cell labels of one split, already in store order (vocabulary indices)."""

    file_idx: np.ndarray  # [N] int64
    cell_type: np.ndarray  # [N] int64
    pert: np.ndarray  # [N] int64
    batch: np.ndarray  # [N] int64
    is_control: np.ndarray  # [N] bool

    def __len__(self) -> int:
        return int(self.file_idx.shape[0])


def store_order(
    file_idx: np.ndarray, cell_type: np.ndarray, pert: np.ndarray, batch: np.ndarray, row: np.ndarray
) -> np.ndarray:
    """Permutation that sorts cells by (file, cell type, perturbation, batch, row)."""
    return np.lexsort((row, batch, pert, cell_type, file_idx))


@dataclass(frozen=True, eq=False)
class GroupLayout:
    """Groups (candidate sets) and their control pools as ranges of store positions."""

    start: np.ndarray  # [G] first store position of the group
    size: np.ndarray  # [G]
    pert: np.ndarray  # [G] vocabulary index
    cell_type: np.ndarray  # [G]
    file_idx: np.ndarray  # [G]
    is_control: np.ndarray  # [G] bool
    pool_start: np.ndarray  # [G] first store position of the group's control pool
    pool_size: np.ndarray  # [G] > 0 for every group

    @property
    def n_groups(self) -> int:
        return int(self.start.shape[0])


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Start indices of runs of equal consecutive key tuples."""
    n = keys[0].shape[0]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _runs(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = _run_starts(*keys)
    sizes = np.diff(np.append(starts, keys[0].shape[0]))
    return starts, sizes


def _pair_key(a: np.ndarray, b: np.ndarray, b_max: int) -> np.ndarray:
    return a.astype(np.int64) * (int(b_max) + 1) + b.astype(np.int64)


def build_layout(
    cells: SplitCells,
    *,
    group_by_batch: bool,
    split: str,
    file_names: Sequence[str],
    cell_type_names: Sequence[str],
) -> GroupLayout:
    """Groups = (file, cell type, pert[, batch]); pools = same-file controls of the cell type (and batch).

    With `group_by_batch` (the `batch` mapping strategy) a group's pool is the controls of its (file, cell
    type, batch), falling back to all controls of its (file, cell type) when that batch has none. A cell type
    without any control in this split is a DataError: never zero vectors.
    """
    if len(cells) == 0:
        raise DataError(f"{split} split has no cells; check the split manifest")
    keys = (cells.file_idx, cells.cell_type, cells.pert) + ((cells.batch,) if group_by_batch else ())
    start, size = _runs(*keys)
    g_file, g_ct, g_pert = cells.file_idx[start], cells.cell_type[start], cells.pert[start]
    g_batch = cells.batch[start]

    ctrl_pos = np.flatnonzero(cells.is_control)
    ct_max = int(cells.cell_type.max(initial=0))
    b_max = int(cells.batch.max(initial=0))
    # Controls of one (file, cell type) are contiguous in store order, and within it sorted by batch.
    ct_key_ctrl = _pair_key(cells.file_idx[ctrl_pos], cells.cell_type[ctrl_pos], ct_max)
    ct_runs, ct_sizes = _runs(ct_key_ctrl)
    ct_keys = ct_key_ctrl[ct_runs]
    g_ct_key = _pair_key(g_file, g_ct, ct_max)
    hit = np.minimum(np.searchsorted(ct_keys, g_ct_key), max(ct_keys.size - 1, 0))
    found = ct_keys[hit] == g_ct_key if ct_keys.size else np.zeros(g_ct_key.shape, bool)
    if not found.all():
        missing = sorted(
            {(file_names[f], cell_type_names[c]) for f, c in zip(g_file[~found].tolist(), g_ct[~found].tolist())}
        )
        listed = "; ".join(f"{c!r} in {f}" for f, c in missing[:10])
        raise DataError(
            f"{split} split: {len(missing)} cell type(s) have no control cells to map from: {listed}\n"
            "    fix: keep control cells of these cell types in this split, or drop the cell types"
        )
    pool_start = ctrl_pos[ct_runs[hit]]
    pool_size = ct_sizes[hit]
    if group_by_batch:
        b_key_ctrl = _pair_key(ct_key_ctrl, cells.batch[ctrl_pos], b_max)
        b_runs, b_sizes = _runs(b_key_ctrl)
        b_keys = b_key_ctrl[b_runs]
        g_b_key = _pair_key(g_ct_key, g_batch, b_max)
        bhit = np.minimum(np.searchsorted(b_keys, g_b_key), b_keys.size - 1)
        same_batch = b_keys[bhit] == g_b_key
        pool_start = np.where(same_batch, ctrl_pos[b_runs[bhit]], pool_start)
        pool_size = np.where(same_batch, b_sizes[bhit], pool_size)
    return GroupLayout(
        start=start.astype(np.int64),
        size=size.astype(np.int64),
        pert=g_pert.astype(np.int64),
        cell_type=g_ct.astype(np.int64),
        file_idx=g_file.astype(np.int64),
        is_control=cells.is_control[start],
        pool_start=pool_start.astype(np.int64),
        pool_size=pool_size.astype(np.int64),
    )


@dataclass(frozen=True, eq=False)
class SetPlan:
    """The sets one rank sees in one epoch, packed into batches."""

    members: np.ndarray  # [n_sets, S] store positions, PAD (-1) = padding
    group: np.ndarray  # [n_sets] group index into the layout
    set_id: np.ndarray  # [n_sets] id of the set in the global plan (seeds its control draw)
    batch_starts: np.ndarray  # [n_batches + 1] offsets into the sets
    epoch: int
    stream: int

    @property
    def n_batches(self) -> int:
        return int(self.batch_starts.shape[0] - 1)

    @property
    def n_cells(self) -> int:
        return int(np.count_nonzero(self.members >= 0))

    def batch_sets(self, i: int) -> slice:
        return slice(int(self.batch_starts[i]), int(self.batch_starts[i + 1]))


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of arange(start, start + size) for each pair, vectorised."""
    total = int(sizes.sum())
    offsets = np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.repeat(starts, sizes) + np.arange(total, dtype=np.int64) - offsets


def _pack(n_sets: int, batch_size: int, drop_last: bool) -> np.ndarray:
    n_batches = n_sets // batch_size if drop_last else -(-n_sets // batch_size)
    return np.minimum(np.arange(n_batches + 1, dtype=np.int64) * batch_size, n_sets)


def _check_sizes(cell_set_len: int, batch_size: int, rank: int, world_size: int) -> None:
    if cell_set_len < 1 or batch_size < 1:
        raise DataError(f"cell_set_len={cell_set_len} and batch_size={batch_size} must both be >= 1")
    if not 0 <= rank < world_size:
        raise DataError(f"rank={rank} must be in [0, world_size={world_size})")


def _target_groups(layout: GroupLayout, include_controls: bool) -> np.ndarray:
    return np.flatnonzero(np.ones(layout.n_groups, bool) if include_controls else ~layout.is_control)


def train_plan(
    layout: GroupLayout,
    *,
    cell_set_len: int,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    include_controls: bool = True,
    drop_last: bool = False,
    stream: int = STREAMS["train"],
) -> SetPlan:
    """Freshly shuffled sets of exactly `cell_set_len` cells for one epoch, this rank's share."""
    _check_sizes(cell_set_len, batch_size, rank, world_size)
    S = cell_set_len
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, epoch]))
    groups = _target_groups(layout, include_controls)
    sizes = layout.size[groups]
    # Shuffle every group's cells: sort by (group, random key).
    cells = _ranges(layout.start[groups], sizes)
    local_group = np.repeat(np.arange(groups.size), sizes)
    shuffled = cells[np.lexsort((rng.random(cells.size), local_group))]
    shuffled_start = np.cumsum(sizes) - sizes

    n_sets_per_group = -(-sizes // S)
    set_local = np.repeat(np.arange(groups.size), n_sets_per_group)  # [n_sets]
    set_k = np.arange(set_local.size) - np.repeat(np.cumsum(n_sets_per_group) - n_sets_per_group, n_sets_per_group)
    n = sizes[set_local][:, None]  # [n_sets, 1]
    offset = set_k[:, None] * S + np.arange(S)[None, :]  # [n_sets, S] positions inside the shuffled group
    over = offset >= n
    # Tail of a group with >= S cells: complete it with the group's first shuffled cells (a random,
    # non-overlapping choice). A group smaller than S: draw the rest with replacement from the group.
    offset = np.where(over & (n >= S), offset - n, offset)
    small = np.nonzero(over & (n < S))
    offset[small] = (rng.random(small[0].size) * n[small[0], 0]).astype(np.int64)
    # Order inside a set carries no meaning (sets are permutation-invariant); sorted rows gather faster.
    members = np.sort(shuffled[shuffled_start[set_local][:, None] + offset], axis=1)  # [n_sets, S]

    n_sets = set_local.size
    order = rng.permutation(n_sets)
    per_rank = n_sets // world_size if drop_last else -(-n_sets // world_size)
    mine = order[(np.arange(per_rank * world_size) % max(n_sets, 1))[rank::world_size]] if n_sets else order
    return SetPlan(
        members=members[mine],
        group=groups[set_local[mine]],
        set_id=mine.astype(np.int64),
        batch_starts=_pack(mine.size, batch_size, drop_last),
        epoch=epoch,
        stream=stream,
    )


def eval_plan(
    layout: GroupLayout,
    *,
    cell_set_len: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    include_controls: bool = True,
    stream: int = STREAMS["test"],
) -> SetPlan:
    """Every cell exactly once: each group cut into ceil(n/S) nearly equal chunks, padded with PAD.

    Ranks get sets round-robin; the set list is padded with empty sets (all PAD) to a multiple of the
    world size so every rank runs the same number of batches.
    """
    _check_sizes(cell_set_len, batch_size, rank, world_size)
    S = cell_set_len
    groups = _target_groups(layout, include_controls)
    sizes = layout.size[groups]
    n_chunks = -(-sizes // S)
    set_local = np.repeat(np.arange(groups.size), n_chunks)
    k = np.arange(set_local.size) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    n, c = sizes[set_local], n_chunks[set_local]
    base, extra = n // c, n % c
    chunk_len = base + (k < extra)
    chunk_off = k * base + np.minimum(k, extra)
    cols = np.arange(S)[None, :]
    members = np.where(
        cols < chunk_len[:, None], layout.start[groups][set_local][:, None] + chunk_off[:, None] + cols, PAD
    )  # [n_sets, S]
    n_sets = set_local.size
    padded = -(-n_sets // world_size) * world_size
    group = np.concatenate([groups[set_local], np.full(padded - n_sets, groups[0] if groups.size else 0)])
    members = np.concatenate([members, np.full((padded - n_sets, S), PAD, dtype=members.dtype)])
    mine = np.arange(rank, padded, world_size)
    return SetPlan(
        members=members[mine],
        group=group[mine].astype(np.int64),
        set_id=mine.astype(np.int64),
        batch_starts=_pack(mine.size, batch_size, drop_last=False),
        epoch=0,
        stream=stream,
    )


def _hashed_uniform(key: np.ndarray, salt: int) -> np.ndarray:
    """Uniform [0, 1) floats from uint64 counters (splitmix64 finaliser): a stateless, vectorised stream."""
    with np.errstate(over="ignore"):
        x = key.astype(np.uint64) + np.uint64(salt)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def draw_controls(layout: GroupLayout, plan: SetPlan, sets: slice, seed: int) -> np.ndarray:
    """One control store position per cell of the given sets [b, S], uniform over the group's pool.

    The draw for cell j of set k is a hash of (seed, stream, epoch, set id, j): the same set gets the same
    controls whichever rank or worker builds it. Controls are sorted within a set (the pairing with the
    set's cells is random either way), which makes the gather read memory in order.
    """
    groups = plan.group[sets]
    S = plan.members.shape[1]
    salt = int(np.random.SeedSequence([seed, plan.stream, plan.epoch, _CONTROL_STREAM]).generate_state(1, np.uint64)[0])
    counters = plan.set_id[sets][:, None].astype(np.uint64) * np.uint64(S) + np.arange(S, dtype=np.uint64)  # [b, S]
    pick = (_hashed_uniform(counters, salt) * layout.pool_size[groups][:, None]).astype(np.int64)
    return layout.pool_start[groups][:, None] + np.sort(pick, axis=1)  # [b, S]
