"""Metrics on pseudobulks and single cells (cell-eval's "anndata pair" metrics), vectorised over perts.

All per-perturbation functions return a float64 array aligned with `Pseudobulk.perts`; scalar metrics
return one float. Definitions follow cell-eval 0.8 exactly (see docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk
from threadpoolctl import threadpool_limits

from state_core.eval.inputs import Groups, dense_rows
from state_core.eval.pseudobulk import Pseudobulk


def rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row of x [P, G] with the same row of y; NaN for a constant row."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=1, keepdims=True)
    yc = y.astype(np.float64) - y.astype(np.float64).mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / denom
    return np.where(denom > 0, np.clip(r, -1.0, 1.0), np.nan)


def pearson_delta(pb: Pseudobulk) -> np.ndarray:
    return rowwise_pearson(pb.pred_delta, pb.real_delta)


def mse(pb: Pseudobulk) -> np.ndarray:
    diff = pb.pred.astype(np.float64) - pb.real
    return (diff * diff).mean(axis=1)


def mae(pb: Pseudobulk) -> np.ndarray:
    return np.abs(pb.pred.astype(np.float64) - pb.real).mean(axis=1)


def mse_delta(pb: Pseudobulk) -> np.ndarray:
    diff = pb.pred_delta.astype(np.float64) - pb.real_delta
    return (diff * diff).mean(axis=1)


def mae_delta(pb: Pseudobulk) -> np.ndarray:
    return np.abs(pb.pred_delta.astype(np.float64) - pb.real_delta).mean(axis=1)


def _pairwise(real: np.ndarray, pred: np.ndarray, reduce) -> np.ndarray:
    """D[q, p] = reduce(real[q] - pred[p]) from explicit differences (exact, unlike the Gram trick)."""
    out = np.empty((real.shape[0], pred.shape[0]))
    for p in range(pred.shape[0]):
        out[:, p] = reduce(real - pred[p][None, :])  # [Q, G] -> [Q]
    return out


def _distances(real: np.ndarray, pred: np.ndarray, metric: str, excluded: np.ndarray) -> np.ndarray:
    """D[q, p] = distance(real effect q, pred effect p) with pred p's own target gene left out.

    excluded[p] is the column of the gene named like perturbation p, or -1. The full distance is
    computed once and the one excluded term removed, instead of one distance matrix per pert.
    """
    p_idx = np.flatnonzero(excluded >= 0)
    g_idx = excluded[p_idx]
    r_g = real[:, g_idx]  # [Q, k] real value of each excluded gene
    p_g = pred[p_idx, g_idx][None, :]  # [1, k]
    if metric == "l1":
        dist = _pairwise(real, pred, lambda d: np.abs(d).sum(axis=1))
        dist[:, p_idx] -= np.abs(r_g - p_g)
        return dist
    if metric == "l2":
        sq = _pairwise(real, pred, lambda d: (d * d).sum(axis=1))
        sq[:, p_idx] -= (r_g - p_g) ** 2
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        dot = real @ pred.T  # [Q, P]
        real_sq = np.repeat((real * real).sum(axis=1)[:, None], pred.shape[0], axis=1)
        pred_sq = np.repeat((pred * pred).sum(axis=1)[None, :], real.shape[0], axis=0)
        dot[:, p_idx] -= r_g * p_g
        real_sq[:, p_idx] -= r_g**2
        pred_sq[:, p_idx] -= p_g**2
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = dot / np.sqrt(np.maximum(real_sq, 0.0) * np.maximum(pred_sq, 0.0))
        return 1.0 - np.clip(np.nan_to_num(sim), -1.0, 1.0)
    raise ValueError(f"unknown discrimination metric {metric!r}")


def discrimination_score(
    pb: Pseudobulk, genes: np.ndarray, metric: str, embed: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """1 - rank/N of the true perturbation among all real effects, nearest first (best 1, worst 1/N).

    `embed` = (real_delta, pred_delta) of an obsm embedding replaces X for l2/cosine; then no gene
    is excluded. L1 always uses X, as in cell-eval.
    """
    if embed is not None and metric != "l1":
        real, pred = (e.astype(np.float64) for e in embed)
        excluded = np.full(len(pb.perts), -1)
    else:
        real, pred = pb.real_delta.astype(np.float64), pb.pred_delta.astype(np.float64)
        gene_pos = {str(g): i for i, g in enumerate(genes)}
        excluded = np.array([gene_pos.get(p, -1) for p in pb.perts])
    dist = _distances(real, pred, metric, excluded)  # [Q real, P pred]
    n = len(pb.perts)
    scores = np.empty(n)
    for p in range(n):
        order = np.argsort(dist[:, p])  # cell-eval's (unstable) tie order
        scores[p] = 1.0 - int(np.flatnonzero(order == p)[0]) / n
    return scores


class _Cells:
    """Cells as float64 rows with their squared norms, for distances via ||a||^2 + ||b||^2 - 2 a.b."""

    def __init__(self, x: np.ndarray | sp.csr_matrix, rows: np.ndarray) -> None:
        self.values = dense_rows(x, rows).astype(np.float64)  # [n, G]
        self.sq_norm = np.einsum("ij,ij->i", self.values, self.values)  # [n], no [n, G] temporary

    def mean_distance_to(self, other: _Cells) -> float:
        """Mean Euclidean distance over all (self, other) pairs."""
        sq = self.sq_norm[:, None] + other.sq_norm[None, :] - 2.0 * (self.values @ other.values.T)
        return float(_sqrt_clipped(sq).mean())

    def mean_distance_within(self) -> float:
        """Mean over all ordered pairs, the zero diagonal included (V-statistic)."""
        n = self.values.shape[0]
        # syrk: the upper triangle of values @ values.T, half a GEMM's work (numpy's `@` does the full GEMM);
        # values.T is Fortran-ordered, so BLAS reads it without a copy
        gram = dsyrk(1.0, self.values.T, trans=1)  # [n, n], upper triangle
        upper = np.triu_indices(n, 1)
        sq = self.sq_norm[upper[0]] + self.sq_norm[upper[1]] - 2.0 * gram[upper]  # [n (n - 1) / 2]
        return float(2.0 * _sqrt_clipped(sq).sum() / (n * n)) if n else float("nan")


def _sqrt_clipped(sq: np.ndarray) -> np.ndarray:
    """sqrt of squared distances; rounding can make a near-zero one slightly negative."""
    np.maximum(sq, 0.0, out=sq)
    return np.sqrt(sq, out=sq)


def energy_distances(x: np.ndarray | sp.csr_matrix, groups: Groups) -> np.ndarray:
    """E(p) = 2 E|p - c| - E|p - p'| - E|c - c'| over single cells (V-statistic), per perturbation.

    One BLAS thread: the products are small (~100 cells a side), and OpenBLAS's 2 threads on them were measured
    12x slower than one on a quiet 2-core machine (bench/RESULTS.md, eval).
    """
    with threadpool_limits(limits=1):
        return _energy_distances(x, groups)


def _energy_distances(x: np.ndarray | sp.csr_matrix, groups: Groups) -> np.ndarray:
    ctrl = _Cells(x, groups.rows[groups.control])
    within_ctrl = ctrl.mean_distance_within()
    out = np.empty(len(groups.perts))
    for i, pert in enumerate(groups.perts):
        cells = _Cells(x, groups.rows[pert])
        out[i] = 2.0 * cells.mean_distance_to(ctrl) - cells.mean_distance_within() - within_ctrl
    return out


def pearson_edistance(
    real_x: np.ndarray | sp.csr_matrix, pred_x: np.ndarray | sp.csr_matrix, real_groups: Groups, pred_groups: Groups
) -> float:
    """Pearson r across perturbations between real and predicted energy distances to control."""
    e_real = energy_distances(real_x, real_groups)
    e_pred = energy_distances(pred_x, pred_groups)
    return float(rowwise_pearson(e_real[None, :], e_pred[None, :])[0])
