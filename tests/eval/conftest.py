"""Tiny synthetic (real, pred) pairs shared by the eval tests."""

from __future__ import annotations

import pytest

from state_core.eval.synthetic_pairs import PairSpec, make_pair

TINY = PairSpec(n_genes=60, n_perts=5, cells_per_group=12, n_programme_genes=10, seed=3)


@pytest.fixture(scope="session")
def tiny_pair():
    return make_pair(TINY)


@pytest.fixture(scope="session")
def tiny_spec():
    return TINY
