"""Per-perturbation mean profiles ("pseudobulks") in log1p space, one sparse matmul per matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from state_core.eval.inputs import Groups


def group_means(x: np.ndarray | sp.csr_matrix, groups: Groups, labels: list[str]) -> np.ndarray:
    """Mean over the cells of each label, float64: [len(labels), G]. X is never densified whole."""
    if not sp.issparse(x):
        return np.stack([np.asarray(x[groups.rows[label]]).mean(axis=0, dtype=np.float64) for label in labels])
    x = sp.csr_matrix(x)
    return np.stack([_sparse_group_mean(x[groups.rows[label]]) for label in labels])


def _sparse_group_mean(cells: sp.csr_matrix) -> np.ndarray:
    """sum_r (1/n) * x_r in float64, the cells in row order, as a [1, n] @ [n, G] sparse product does.

    One group at a time: converting all of X to float64 at once cost more (page faults of a
    file-sized copy) than the products themselves.
    """
    n = cells.shape[0]
    weights = sp.csr_matrix(np.full((1, n), 1.0 / max(n, 1)))
    cells64 = sp.csr_matrix((cells.data.astype(np.float64), cells.indices, cells.indptr), shape=cells.shape)
    return (weights @ cells64).toarray()[0]


@dataclass(frozen=True)
class Pseudobulk:
    """Pseudobulk of every perturbation and of the control, for real and pred.

    Values are rounded to float32, the precision cell-eval's polars group-by mean keeps for float32
    inputs, so deltas and distances reproduce its numbers; arithmetic on them is float64.
    """

    perts: list[str]
    real: np.ndarray  # [P, G] float32
    pred: np.ndarray  # [P, G] float32
    real_ctrl: np.ndarray  # [G] float32
    pred_ctrl: np.ndarray  # [G] float32
    real_mean64: np.ndarray  # [P, G] unrounded means (clustering_agreement's centroids)
    pred_mean64: np.ndarray  # [P, G]

    @property
    def real_delta(self) -> np.ndarray:
        return self.real - self.real_ctrl[None, :]  # [P, G] float32, as cell-eval subtracts

    @property
    def pred_delta(self) -> np.ndarray:
        return self.pred - self.pred_ctrl[None, :]


def build_pseudobulk(
    real_x: np.ndarray | sp.csr_matrix,
    pred_x: np.ndarray | sp.csr_matrix,
    real_groups: Groups,
    pred_groups: Groups,
) -> Pseudobulk:
    labels = real_groups.perts + [real_groups.control]
    real64 = group_means(real_x, real_groups, labels)
    pred64 = group_means(pred_x, pred_groups, labels)
    real, pred = real64.astype(np.float32), pred64.astype(np.float32)
    return Pseudobulk(
        perts=real_groups.perts, real=real[:-1], pred=pred[:-1], real_ctrl=real[-1], pred_ctrl=pred[-1],
        real_mean64=real64[:-1], pred_mean64=pred64[:-1],
    )  # fmt: skip
