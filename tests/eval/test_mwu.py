import numpy as np
from scipy.stats import mannwhitneyu

from state_core.eval.mwu import mannwhitneyu_columns


def test_matches_scipy_asymptotic_with_ties_and_continuity():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(15, 40)).astype(np.float32)  # many ties, like sparse counts
    y = rng.integers(0, 5, size=(11, 40)).astype(np.float32)
    u, p = mannwhitneyu_columns(x, y)
    ref = mannwhitneyu(x, y, axis=0, method="asymptotic", use_continuity=True, alternative="two-sided")
    np.testing.assert_allclose(u, ref.statistic, rtol=0, atol=1e-9)
    np.testing.assert_allclose(p, ref.pvalue, rtol=1e-6)  # scipy differs from numba-mwu in the last digits


def test_matches_the_numba_mwu_formula_column_by_column():
    from scipy.special import ndtr
    from scipy.stats import rankdata

    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(9, 25)).astype(np.float32)
    y = rng.integers(0, 4, size=(13, 25)).astype(np.float32)
    _, p = mannwhitneyu_columns(x, y)
    n1, n2 = 9, 13
    n = n1 + n2
    for g in range(25):
        both = np.r_[x[:, g], y[:, g]]
        u1 = rankdata(both)[:n1].sum() - n1 * (n1 + 1) / 2
        _, t = np.unique(both, return_counts=True)
        sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - (t**3 - t).sum() / (n * (n - 1))))
        z = (max(u1, n1 * n2 - u1) - n1 * n2 / 2 - 0.5) / sd
        assert abs(p[g] - min(1.0, 2 * ndtr(-z))) < 1e-14


def test_constant_gene_gets_p_one():
    x = np.zeros((5, 2), dtype=np.float32)
    y = np.zeros((4, 2), dtype=np.float32)
    x[:, 1] = 1.0
    _, p = mannwhitneyu_columns(x, y)
    assert p[0] == 1.0 and p[1] < 0.05


def test_hand_computed_u_statistic():
    # x = [1, 3], y = [2]: pairs (1>2)=0, (3>2)=1 -> U1 = 1
    u, _ = mannwhitneyu_columns(np.array([[1.0], [3.0]]), np.array([[2.0]]))
    assert u[0] == 1.0


def test_sorted_reference_path_equals_generic_path():
    from state_core.eval.mwu import SortedReference

    rng = np.random.default_rng(2)
    x = np.maximum(rng.normal(0.2, 1, size=(30, 50)), 0).astype(np.float32)  # zeros and ties
    y = np.maximum(rng.normal(0.0, 1, size=(25, 50)), 0).astype(np.float32)
    y[:, 3] = 0.0
    x[:, 3] = -0.0  # signed zero must tie with zero
    u, p = mannwhitneyu_columns(x, y)
    u2, p2 = SortedReference(y).test(x)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(p, p2)


def _tied_nonnegative(rng, n, g):
    """Zeros, repeated non-zero values (ties across and within groups) and continuous values."""
    x = np.maximum(rng.normal(0.3, 1, size=(n, g)), 0).astype(np.float32)
    coarse = rng.random((n, g)) < 0.4
    x[coarse] = np.round(x[coarse] * 2) / 2  # ties at 0.5, 1.0, ...
    return x


def test_pooled_reference_matches_scipy_and_generic_path():
    from state_core.eval.mwu import PooledReference

    rng = np.random.default_rng(3)
    for n1, n2 in ((30, 25), (7, 40), (1, 3), (50, 5)):
        x = _tied_nonnegative(rng, n1, 60)
        y = _tied_nonnegative(rng, n2, 60)
        y[:, 3] = 0.0
        x[:, 3] = -0.0  # signed zero must tie with zero
        x[:, 4] = 2.5
        y[:, 4] = 2.5  # one constant non-zero gene: p = 1
        y[:, 5] = 2.5  # a non-zero tie run that spans reference and group
        u, p = mannwhitneyu_columns(x, y)
        u2, p2 = PooledReference(y).test(x)
        np.testing.assert_array_equal(u, u2)
        np.testing.assert_array_equal(p, p2)
        assert p2[4] == 1.0
        varying = np.ptp(np.r_[x, y], axis=0) > 0
        ref = mannwhitneyu(x, y, axis=0, method="asymptotic", use_continuity=True, alternative="two-sided")
        np.testing.assert_allclose(u2, ref.statistic, rtol=0, atol=1e-9)
        np.testing.assert_allclose(p2[varying], ref.pvalue[varying], rtol=1e-5, atol=1e-12)  # see first test


def test_pooled_reference_gene_blocks_do_not_change_results():
    from state_core.eval.mwu import PooledReference

    rng = np.random.default_rng(4)
    x, y = _tied_nonnegative(rng, 20, 37), _tied_nonnegative(rng, 15, 37)
    whole = PooledReference(y)
    small = PooledReference(y)
    small.BLOCK_ELEMENTS = 3 * (20 + 15)  # 3 genes per block; tie runs must not cross gene rows
    for a, b in zip(whole.test(x), small.test(x)):
        np.testing.assert_array_equal(a, b)


def test_reference_tests_pick_a_kernel_with_the_same_numbers():
    from state_core.eval.mwu import ReferenceTests

    rng = np.random.default_rng(5)
    y = _tied_nonnegative(rng, 60, 30)
    tests = ReferenceTests(y)
    for n1 in (5, 40):  # 60 > 6 * 5: sorted reference; 60 <= 6 * 40: pooled
        x = _tied_nonnegative(rng, n1, 30)
        for a, b in zip(mannwhitneyu_columns(x, y), tests.test(x)):
            np.testing.assert_array_equal(a, b)
    assert tests._pooled is not None and tests._sorted is not None
    negative = -_tied_nonnegative(rng, 10, 30)  # not bit-comparable: generic ranking
    for a, b in zip(mannwhitneyu_columns(negative, y), tests.test(negative)):
        np.testing.assert_array_equal(a, b)
