"""Two-sided Mann-Whitney U test, vectorised over genes.

Same numbers as numba-mwu's asymptotic method (used by pdex/cell-eval): average ranks, tie-corrected
variance, 0.5 continuity correction, p = 2 * Phi(-z) with z from max(U1, U2), clipped to [0, 1],
and p = 1 when every value of a gene is identical.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erfc

# Genes per block, so [n_cells, block] work arrays stay small for wide data.
GENE_BLOCK = 2048


def _rank_sums(values: np.ndarray, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank sum of the first `n_first` rows and sum(t^3 - t) over tie groups, per column."""
    n = values.shape[0]
    order = np.argsort(values, axis=0, kind="stable")  # [n, g]
    ordered = np.take_along_axis(values, order, axis=0)
    position = np.arange(n)[:, None]
    run_start = np.ones(ordered.shape, dtype=bool)
    run_start[1:] = ordered[1:] != ordered[:-1]
    run_end = np.ones(ordered.shape, dtype=bool)
    run_end[:-1] = run_start[1:]
    first = np.maximum.accumulate(np.where(run_start, position, 0), axis=0)
    last = np.minimum.accumulate(np.where(run_end, position, n - 1)[::-1], axis=0)[::-1]
    avg_rank = (first + last) / 2.0 + 1.0  # [n, g] average rank of each sorted value
    rank_sum = np.where(order < n_first, avg_rank, 0.0).sum(axis=0)
    tie_size = (last - first + 1).astype(np.float64)
    # each member of a tie group of size t adds t^2 - 1, so a group adds t^3 - t
    tie_term = (tie_size * tie_size - 1.0).sum(axis=0)
    return rank_sum, tie_term


def mannwhitneyu_columns(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Test each column of x [n1, G] against the same column of y [n2, G]: (U1 [G], p [G])."""
    n1, n2 = x.shape[0], y.shape[0]
    n_genes = x.shape[1]
    rank_sum = np.empty(n_genes)
    tie_term = np.empty(n_genes)
    for lo in range(0, n_genes, GENE_BLOCK):
        hi = min(lo + GENE_BLOCK, n_genes)
        both = np.concatenate([x[:, lo:hi], y[:, lo:hi]], axis=0)  # [n1 + n2, g]
        rank_sum[lo:hi], tie_term[lo:hi] = _rank_sums(both, n1)
    return u_and_pvalue(rank_sum, n1, n2, tie_term)


class SortedReference:
    """The reference (control) cells sorted once per gene, for testing many groups against them.

    Non-negative float32 values (log1p data) are compared through their IEEE bit patterns, which sort
    like the values; a gene's index in the high bits makes one global sorted array, so one
    `searchsorted` serves all genes at once.
    """

    def __init__(self, ref: np.ndarray) -> None:
        self.n = ref.shape[0]
        self.n_genes = ref.shape[1]
        keys = _sorted_gene_keys(ref)  # [G * n]
        starts = _run_starts(keys)
        sizes = np.diff(np.append(starts, keys.size))
        gene = keys[starts] >> 32
        # one entry per distinct (gene, value): key, its count, and how many smaller values the gene has
        self.distinct = keys[starts]
        self.count = np.append(sizes, 0).astype(np.float64)  # trailing 0: "not found" lookups land here
        self.below = np.append(starts - gene * self.n, 0).astype(np.float64)
        self.tie_term = np.bincount(gene, weights=sizes**3.0 - sizes, minlength=self.n_genes)  # [G]

    @staticmethod
    def supports(x: np.ndarray) -> bool:
        return x.dtype == np.float32 and x.size > 0 and bool(np.all(x >= 0))

    def test(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided MWU of each column of x [n1, G] against the reference: (U1 [G], p [G])."""
        n1 = x.shape[0]
        keys = _sorted_gene_keys(x)  # [G * n1]
        # look each distinct value up once (zeros make long runs), weight by its run length
        starts = _run_starts(keys)
        distinct = keys[starts]
        t_x = np.diff(np.append(starts, keys.size)).astype(np.float64)
        gene = distinct >> 32
        pos = np.searchsorted(self.distinct, distinct)  # first reference value >= this one
        nearest = self.distinct[np.minimum(pos, self.distinct.size - 1)]
        t_ref = np.where(nearest == distinct, self.count[pos], 0.0)
        # reference values of this gene below: at pos when inside the gene, else the gene's size
        in_gene = (pos < self.distinct.size) & ((nearest >> 32) == gene)
        below = np.where(in_gene, self.below[pos], float(self.n))
        u1 = np.bincount(gene, weights=t_x * (below + 0.5 * t_ref), minlength=self.n_genes)
        # tie groups of the pooled sample: the reference's, where each value of x joins or adds one
        t_all = t_x + t_ref
        change = (t_all**3 - t_all) - (t_ref**3 - t_ref)
        tie_term = self.tie_term + np.bincount(gene, weights=change, minlength=self.n_genes)
        return u_and_pvalue(u1 + n1 * (n1 + 1.0) / 2.0, n1, self.n, tie_term)


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    new = np.ones(sorted_keys.size, dtype=bool)
    new[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return np.flatnonzero(new)


def _sorted_gene_keys(x: np.ndarray) -> np.ndarray:
    """Gene-major keys (gene << 32 | float bits) of x [n, G], sorted within each gene: [G * n]."""
    bits = np.ascontiguousarray((x + np.float32(0.0)).T).view(np.int32)  # [G, n]; + 0.0 maps -0.0 to 0.0
    bits.sort(axis=1)  # along the contiguous axis: much faster than sorting columns
    keys = bits.astype(np.int64)
    keys += (np.arange(x.shape[1], dtype=np.int64) << 32)[:, None]
    return keys.ravel()


def u_and_pvalue(
    rank_sum: np.ndarray, n1: int, n2: int, tie_term: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = float(n1 + n2)
    u1 = rank_sum - n1 * (n1 + 1.0) / 2.0
    u2 = n1 * n2 - u1
    mu = n1 * n2 / 2.0
    var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))) if n > 1 else np.zeros_like(u1)
    constant = var <= 0.0
    sd = np.sqrt(np.where(constant, 1.0, var))
    z = (np.maximum(u1, u2) - mu - 0.5) / sd
    p = np.clip(2.0 * 0.5 * erfc(z / np.sqrt(2.0)), 0.0, 1.0)
    return u1, np.where(constant, 1.0, p)
