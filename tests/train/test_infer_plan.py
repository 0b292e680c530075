"""Inference set planning: sets never mix cell types or perturbations; basal cells are same-type controls."""

import numpy as np
import pytest

from state_core.errors import DataError
from state_core.train.infer import chunk_sizes, plan_sets, run_plan


def _labels(rng, n=500):
    ct = rng.choice(["A", "B"], size=n)
    pert = rng.choice(["ctrl", "p1", "p2", "p3"], size=n, p=[0.3, 0.3, 0.2, 0.2])
    return ct, pert


def test_chunks_are_nearly_equal_and_bounded():
    assert chunk_sizes(10, 4) == [4, 3, 3]
    assert chunk_sizes(8, 4) == [4, 4]
    assert chunk_sizes(3, 64) == [3]
    for n in range(1, 300):
        sizes = chunk_sizes(n, 64)
        assert sum(sizes) == n and max(sizes) <= 64 and max(sizes) - min(sizes) <= 1


def test_sets_are_homogeneous_and_cover_every_cell_once():
    rng = np.random.default_rng(0)
    ct, pert = _labels(rng)
    plan = plan_sets(pert, ct, pert == "ctrl", max_len=32, seed=1)
    rows = np.concatenate(plan.rows)
    assert np.array_equal(np.sort(rows), np.arange(ct.size))
    for r, b in zip(plan.rows, plan.basal_rows):
        assert len(set(ct[r])) == 1 and len(set(pert[r])) == 1 and r.size <= 32
        assert (pert[b] == "ctrl").all() and (ct[b] == ct[r[0]]).all()


def test_plan_is_seeded():
    rng = np.random.default_rng(0)
    ct, pert = _labels(rng)
    a = plan_sets(pert, ct, pert == "ctrl", 32, seed=5)
    b = plan_sets(pert, ct, pert == "ctrl", 32, seed=5)
    c = plan_sets(pert, ct, pert == "ctrl", 32, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a.basal_rows, b.basal_rows))
    assert not all(np.array_equal(x, y) for x, y in zip(a.basal_rows, c.basal_rows))


def test_cell_type_without_controls_is_an_error():
    ct = np.array(["A", "A", "B", "B"])
    pert = np.array(["ctrl", "p1", "p1", "p1"])
    with pytest.raises(DataError, match="'B' has no control cells"):
        plan_sets(pert, ct, pert == "ctrl", 8, seed=0)
    plan = plan_sets(pert, ct, pert == "ctrl", 8, seed=0, basal="self")
    assert all(np.array_equal(r, b) for r, b in zip(plan.rows, plan.basal_rows))


def test_run_plan_pads_with_a_mask_and_scatters_back():
    rng = np.random.default_rng(0)
    ct, pert = _labels(rng, 120)
    feats = rng.normal(size=(120, 5)).astype(np.float32)
    plan = plan_sets(pert, ct, pert == "ctrl", 16, seed=0, basal="self")
    seen_masks = []

    def predictor(ctrl, pert_idx, batch_idx, mask, cell_type_idx):
        seen_masks.append(mask.copy())
        return ctrl * 2.0, None  # identity-like model: prediction = 2 * basal

    latent, genes = run_plan(
        plan,
        feats,
        np.zeros(120, np.int64),
        np.zeros(120, np.int64),
        np.zeros(120, np.int64),
        predictor,
        batch_size=4,
        max_len=16,
    )
    assert genes is None
    np.testing.assert_allclose(latent, 2 * feats)
    assert sum(int(m.sum()) for m in seen_masks) == 120
