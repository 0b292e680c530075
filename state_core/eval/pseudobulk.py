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
    row_idx, col_idx, weights = [], [], []
    for i, label in enumerate(labels):
        rows = groups.rows[label]
        row_idx.append(np.full(rows.size, i))
        col_idx.append(rows)
        weights.append(np.full(rows.size, 1.0 / max(rows.size, 1)))
    averaging = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(row_idx), np.concatenate(col_idx))),
        shape=(len(labels), x.shape[0]),
    )  # [P, N]
    return np.asarray((averaging @ x.astype(np.float64)).toarray())  # [P, G]


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
