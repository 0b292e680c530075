"""Cell-set plans: homogeneous sets, fresh shuffles per epoch, tails, DDP shards, eval coverage."""

from __future__ import annotations

import numpy as np
import pytest

from state_core.data.sampler import (
    PAD,
    GroupLayout,
    SplitCells,
    build_layout,
    draw_controls,
    eval_plan,
    store_order,
    train_plan,
)
from state_core.errors import DataError

CONTROL = 0  # perturbation index of the control in these tests


def make_cells(
    n: int = 900, n_ct: int = 2, n_pert: int = 5, n_batch: int = 3, seed: int = 0, files: int = 2
) -> SplitCells:
    """Random labels, sorted into store order. Group sizes are uneven (some smaller than a set)."""
    rng = np.random.default_rng(seed)
    weights = np.array([4.0, 1.0, 0.2, 2.0, 0.05][:n_pert])
    pert = rng.choice(n_pert, size=n, p=weights / weights.sum())
    cells = dict(
        file_idx=rng.integers(0, files, n),
        cell_type=rng.integers(0, n_ct, n),
        pert=pert,
        batch=rng.integers(0, n_batch, n),
    )
    order = store_order(**cells, row=np.arange(n))
    sorted_cells = {k: v[order].astype(np.int64) for k, v in cells.items()}
    return SplitCells(is_control=sorted_cells["pert"] == CONTROL, **sorted_cells)


def layout_of(cells: SplitCells, by_batch: bool = False) -> GroupLayout:
    return build_layout(
        cells, group_by_batch=by_batch, split="train", file_names=["f0", "f1"], cell_type_names=["A", "B"]
    )


def test_sets_are_homogeneous_in_file_cell_type_and_perturbation() -> None:
    cells = make_cells()
    plan = train_plan(layout_of(cells), cell_set_len=16, batch_size=4, seed=1, epoch=0)
    for labels in (cells.file_idx, cells.cell_type, cells.pert):
        per_set = labels[plan.members]  # [n_sets, S]
        assert (per_set == per_set[:, :1]).all()


def test_every_cell_is_used_each_epoch_and_tails_are_not_few_repeated_cells() -> None:
    cells = make_cells()
    layout = layout_of(cells)
    plan = train_plan(layout, cell_set_len=16, batch_size=4, seed=1, epoch=0)
    assert set(np.unique(plan.members).tolist()) == set(range(len(cells)))
    for row, group in zip(plan.members, plan.group):
        distinct = np.unique(row).size
        # A set holds min(S, group size) distinct cells: tails are filled from the rest of the group.
        assert distinct == min(16, layout.size[group])


def test_membership_and_order_reshuffle_across_epochs() -> None:
    layout = layout_of(make_cells())
    first = train_plan(layout, cell_set_len=16, batch_size=4, seed=1, epoch=0)
    second = train_plan(layout, cell_set_len=16, batch_size=4, seed=1, epoch=1)
    assert first.members.shape == second.members.shape
    assert not np.array_equal(first.members, second.members)
    sets_0 = {frozenset(r.tolist()) for r in first.members}
    sets_1 = {frozenset(r.tolist()) for r in second.members}
    assert len(sets_0 & sets_1) < len(sets_0) // 2


def test_same_seed_and_epoch_give_identical_plans() -> None:
    layout = layout_of(make_cells())
    a = train_plan(layout, cell_set_len=16, batch_size=4, seed=3, epoch=2)
    b = train_plan(layout, cell_set_len=16, batch_size=4, seed=3, epoch=2)
    np.testing.assert_array_equal(a.members, b.members)
    np.testing.assert_array_equal(
        draw_controls(layout, a, a.batch_sets(0), 3), draw_controls(layout, b, b.batch_sets(0), 3)
    )


def test_controls_come_from_the_same_file_and_cell_type() -> None:
    cells = make_cells()
    layout = layout_of(cells)
    plan = train_plan(layout, cell_set_len=16, batch_size=4, seed=1, epoch=0)
    ctrl = draw_controls(layout, plan, slice(0, len(plan.group)), seed=1)
    assert cells.is_control[ctrl].all()
    np.testing.assert_array_equal(cells.cell_type[ctrl], cells.cell_type[plan.members])
    np.testing.assert_array_equal(cells.file_idx[ctrl], cells.file_idx[plan.members])


def test_batch_strategy_groups_by_batch_and_maps_controls_of_the_same_batch() -> None:
    cells = make_cells(n=2000)
    layout = layout_of(cells, by_batch=True)
    plan = train_plan(layout, cell_set_len=8, batch_size=4, seed=1, epoch=0)
    batches = cells.batch[plan.members]
    assert (batches == batches[:, :1]).all()
    ctrl = draw_controls(layout, plan, slice(0, len(plan.group)), seed=1)
    np.testing.assert_array_equal(cells.batch[ctrl], batches)


def test_batch_strategy_falls_back_to_the_cell_type_when_a_batch_has_no_controls() -> None:
    cells = make_cells(n=600)
    keep = ~(cells.is_control & (cells.batch == 2))  # batch 2 loses its controls
    cells = SplitCells(**{k: getattr(cells, k)[keep] for k in ("file_idx", "cell_type", "pert", "batch", "is_control")})
    layout = layout_of(cells, by_batch=True)
    plan = train_plan(layout, cell_set_len=8, batch_size=4, seed=1, epoch=0)
    ctrl = draw_controls(layout, plan, slice(0, len(plan.group)), seed=1)
    assert cells.is_control[ctrl].all()
    np.testing.assert_array_equal(cells.cell_type[ctrl], cells.cell_type[plan.members])


def test_a_cell_type_without_controls_is_an_error_naming_it() -> None:
    cells = make_cells()
    keep = ~(cells.is_control & (cells.cell_type == 1))
    cells = SplitCells(**{k: getattr(cells, k)[keep] for k in ("file_idx", "cell_type", "pert", "batch", "is_control")})
    with pytest.raises(DataError, match="'B'"):
        layout_of(cells)


def test_controls_can_be_left_out_of_the_target_sets() -> None:
    cells = make_cells()
    plan = train_plan(layout_of(cells), cell_set_len=16, batch_size=4, seed=1, epoch=0, include_controls=False)
    assert not cells.is_control[plan.members].any()


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_are_disjoint_with_equal_batch_counts(world_size: int) -> None:
    layout = layout_of(make_cells())
    kw = dict(cell_set_len=16, batch_size=3, seed=5, epoch=1, world_size=world_size)
    dropped = [train_plan(layout, rank=r, drop_last=True, **kw) for r in range(world_size)]
    assert len({p.n_batches for p in dropped}) == 1
    ids = np.concatenate([p.set_id for p in dropped])
    assert np.unique(ids).size == ids.size
    wrapped = [train_plan(layout, rank=r, **kw) for r in range(world_size)]
    assert len({p.n_batches for p in wrapped}) == 1
    all_ids = np.concatenate([p.set_id for p in wrapped])
    n_sets = train_plan(layout, **{**kw, "world_size": 1}).set_id.size
    assert set(all_ids.tolist()) == set(range(n_sets))  # every set is served
    assert all_ids.size - n_sets < world_size  # only the wrap-around padding repeats


def test_eval_plan_covers_every_cell_once_with_masks_and_near_equal_chunks() -> None:
    cells = make_cells()
    layout = layout_of(cells)
    plan = eval_plan(layout, cell_set_len=16, batch_size=4)
    real = plan.members[plan.members != PAD]
    np.testing.assert_array_equal(np.sort(real), np.arange(len(cells)))
    lengths = (plan.members != PAD).sum(axis=1)
    assert lengths.max() <= 16
    for g in range(layout.n_groups):
        chunk = lengths[plan.group == g]
        assert chunk.sum() == layout.size[g] and chunk.max() - chunk.min() <= 1
    assert (plan.members[:, :1] != PAD).all()  # padding only at the end of a set


def test_eval_plan_shards_cover_every_cell_once_with_equal_counts() -> None:
    cells = make_cells()
    layout = layout_of(cells)
    plans = [eval_plan(layout, cell_set_len=16, batch_size=4, rank=r, world_size=3) for r in range(3)]
    assert len({p.n_batches for p in plans}) == 1
    real = np.concatenate([p.members[p.members != PAD] for p in plans])
    np.testing.assert_array_equal(np.sort(real), np.arange(len(cells)))


def test_control_draws_cover_the_pool_and_change_with_the_epoch() -> None:
    cells = make_cells(n=3000)
    layout = layout_of(cells)
    draws = [
        draw_controls(layout, plan, slice(0, len(plan.group)), seed=1)
        for plan in (train_plan(layout, cell_set_len=16, batch_size=4, seed=1, epoch=e) for e in range(8))
    ]
    assert set(np.unique(draws).tolist()) == set(np.flatnonzero(cells.is_control).tolist())
    assert not np.array_equal(np.sort(draws[0], axis=None), np.sort(draws[1], axis=None))
