"""Metrics that compare the real and predicted DE tables (cell-eval's "DE" metrics).

"Significant" means fdr < threshold (strict) on float32 FDRs, because cell-eval casts the tables to
Float32. Ranked lists sort significant genes by |log2FC| (float32) descending; ties keep table order,
so +-inf fold changes come first. Per-perturbation results are float64 arrays aligned with
`DETable.perts`; NaN there means "null" (absent) when the metric says so in `MetricValue.null`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from state_core.eval.de import DETable

FDR_THRESHOLD = 0.05
# pr/roc AUC use a hard-wired 0.05 in cell-eval, whatever fdr_threshold says.
AUC_FDR_THRESHOLD = 0.05


@dataclass(frozen=True)
class DEComparison:
    """The two tables on the same perturbations and genes, with the derived masks metrics share."""

    real: DETable
    pred: DETable
    fdr_threshold: float = FDR_THRESHOLD

    def sig_real(self) -> np.ndarray:
        return self.real.significant(self.fdr_threshold)

    def sig_pred(self) -> np.ndarray:
        return self.pred.significant(self.fdr_threshold)

    def ranked(self, table: DETable, sig: np.ndarray) -> list[np.ndarray]:
        """Per pert: gene indices of significant genes, largest |log2FC| first, ties in table order."""
        abs_lfc = np.abs(table.log2_fold_change.astype(np.float32))
        out = []
        for p in range(len(table.perts)):
            genes = np.flatnonzero(sig[p])
            out.append(genes[np.argsort(-abs_lfc[p, genes], kind="stable")])
        return out


def overlap_at_k(cmp: DEComparison, k: int | None, metric: str = "overlap") -> np.ndarray:
    """|top_k(real) & top_k(pred)| / k, k = min(K, n_real) ("overlap") or min(K, n_pred) ("precision")."""
    real_lists = cmp.ranked(cmp.real, cmp.sig_real())
    pred_lists = cmp.ranked(cmp.pred, cmp.sig_pred())
    out = np.zeros(len(real_lists))
    for p, (real_genes, pred_genes) in enumerate(zip(real_lists, pred_lists, strict=True)):
        n_ref = real_genes.size if metric == "overlap" else pred_genes.size
        k_eff = min(k or n_ref, n_ref)
        if k_eff > 0:
            out[p] = np.intersect1d(real_genes[:k_eff], pred_genes[:k_eff]).size / k_eff
    return out


def nsig_counts(cmp: DEComparison) -> tuple[np.ndarray, np.ndarray]:
    return cmp.sig_real().sum(axis=1).astype(np.float64), cmp.sig_pred().sum(axis=1).astype(np.float64)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their mean rank (scipy's rankdata "average")."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    new = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], values.size)
    ranks = np.empty(values.size)
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho with average ranks; NaN for fewer than 2 points or a constant input."""
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float(np.clip((rx * ry).sum() / denom, -1.0, 1.0)) if denom > 0 else float("nan")


def de_spearman_sig(cmp: DEComparison) -> float:
    """Spearman across perts (those with real DEGs) of the real vs predicted DEG counts."""
    n_real, n_pred = nsig_counts(cmp)
    keep = n_real > 0
    if not keep.any():
        return 1.0
    return spearman(n_real[keep], n_pred[keep])


def de_direction_match(cmp: DEComparison) -> np.ndarray:
    """Fraction of real DEGs whose predicted log2FC has the same sign; null without real DEGs."""
    sig = cmp.sig_real() & cmp.pred.present
    same = np.sign(cmp.real.log2_fold_change.astype(np.float32)) == np.sign(
        cmp.pred.log2_fold_change.astype(np.float32)
    )
    n = sig.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (same & sig).sum(axis=1) / n, np.nan)


def de_spearman_lfc_sig(cmp: DEComparison) -> np.ndarray:
    """Spearman over real DEGs of real vs predicted log2FC (missing pred -> 0); null without DEGs."""
    sig = cmp.sig_real()
    real_lfc = cmp.real.log2_fold_change.astype(np.float32).astype(np.float64)
    pred_lfc = np.nan_to_num(
        cmp.pred.log2_fold_change.astype(np.float32).astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf
    )
    out = np.full(len(cmp.real.perts), np.nan)
    for p in range(out.size):
        genes = np.flatnonzero(sig[p])
        if genes.size:
            out[p] = spearman(real_lfc[p, genes], pred_lfc[p, genes])
    return out


def de_sig_genes_recall(cmp: DEComparison) -> np.ndarray:
    """|real DEGs & pred DEGs| / |real DEGs| (no top-k cut); null without real DEGs."""
    sig_real = cmp.sig_real()
    n = sig_real.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sig_real & cmp.sig_pred()).sum(axis=1) / n, np.nan)


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """sklearn's average_precision_score: sum over score thresholds of (delta recall) * precision."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], labels[order]
    last_of_tie = np.append(np.flatnonzero(np.diff(s)), y.size - 1)
    tps = np.cumsum(y)[last_of_tie]
    fps = last_of_tie + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids over score thresholds), as roc_curve + auc compute it."""
    order = np.argsort(scores, kind="mergesort")[::-1]
    s, y = scores[order], labels[order]
    last_of_tie = np.append(np.flatnonzero(np.diff(s)), y.size - 1)
    tps = np.concatenate([[0.0], np.cumsum(y)[last_of_tie]])
    fps = np.concatenate([[0.0], last_of_tie + 1 - tps[1:]])
    return float(np.trapezoid(tps / tps[-1], fps / fps[-1]))


def de_auc(cmp: DEComparison, method: str) -> np.ndarray:
    """PR or ROC AUC of -log10(pred FDR) for recovering real DEGs; NaN when labels are all 0 or all 1."""
    labels_all = (cmp.real.fdr32() < np.float32(AUC_FDR_THRESHOLD)).astype(np.float64)
    pred_fdr = np.where(cmp.pred.present, cmp.pred.fdr32(), np.float32(1.0))
    scores_all = -np.log10(np.clip(pred_fdr, np.float32(1e-10), np.float32(1.0)))  # float32, as polars
    out = np.full(len(cmp.real.perts), np.nan)
    for p in range(out.size):
        keep = cmp.real.present[p]
        labels, scores = labels_all[p, keep], scores_all[p, keep].astype(np.float64)
        if 0 < labels.sum() < labels.size:
            out[p] = _average_precision(labels, scores) if method == "pr" else _roc_auc(labels, scores)
    return out
