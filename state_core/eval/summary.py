"""One number per metric (and per cell type) from an evaluation, with the reason a metric is undefined.

The NaN rule, the only one in the project:
- per cell type, a metric's value is cell-eval's `mean` over perturbations: NaN when the metric is NaN for
  any perturbation (cell-eval's value for degenerate input, e.g. Pearson's r of a constant change);
- over cell types, it is the mean of the per-cell-type values, and undefined (NaN) when it is undefined in
  any cell type. It is never averaged over the cell types where it happens to be defined: that number would
  describe other cells, and a NaN must hold a promotion gate back, not pass it.
Undefined metrics carry a sentence saying why (`reasons`); JSON gets them by name, never as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from state_core.eval.evaluation import EvalResult

ALL_CELLS = "all cell types"
SINGLE = "all cells"  # the cell-type name of an evaluation without a cell type column

# Why cell-eval returns NaN for a metric, where the cause is known.
KNOWN_CAUSES = {
    "pearson_delta": "Pearson's r is undefined when the predicted change from control is constant "
    "(a model that predicts no change, such as context_mean)",
    "de_spearman_sig": "needs at least two genes significant in both real and predicted DE",
    "de_spearman_lfc_sig": "needs at least two genes significant in both real and predicted DE",
    "de_sig_genes_recall": "null for perturbations without real DE genes, NaN when no perturbation has any",
}


@dataclass(frozen=True)
class MetricSummary:
    """Metric means per cell type and over cell types (NaN = undefined), with reasons for the NaNs."""

    means: dict[str, float]
    by_cell_type: dict[str, dict[str, float]]
    reasons: dict[str, str] = field(default_factory=dict)
    n_perturbations: dict[str, int] = field(default_factory=dict)

    def defined(self) -> dict[str, float]:
        return {k: v for k, v in self.means.items() if math.isfinite(v)}

    def to_json_dict(self, profile: str = "") -> dict:
        """NaN-free: finite values under `mean` / `cell_types`, undefined metrics under `undefined`."""
        finite = lambda d: {k: float(v) for k, v in d.items() if math.isfinite(v)}  # noqa: E731
        return {
            "profile": profile,
            "cell_types": {ct: finite(m) for ct, m in self.by_cell_type.items()},
            "mean": finite(self.means),
            "undefined": dict(sorted(self.reasons.items())),
        }


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("statistic", "celltype", "perturbation")]


def _split(result: EvalResult) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    if "celltype" not in result.agg.columns:
        return [(SINGLE, result.results, result.agg)]
    return [
        (str(ct), result.results[result.results["celltype"] == ct], result.agg[result.agg["celltype"] == ct])
        for ct in sorted(result.agg["celltype"].astype(str).unique())
    ]


def reason(metric: str, cell_type: str, results: pd.DataFrame) -> str:
    """`undefined in K562: NaN for 3 of 3 perturbations (cause)`."""
    values = results[metric].to_numpy(float) if metric in results.columns else np.array([])
    where = "" if cell_type == SINGLE else f" in {cell_type}"
    text = f"undefined{where}: NaN for {int(np.isnan(values).sum())} of {values.size} perturbations"
    cause = KNOWN_CAUSES.get(metric)
    return f"{text} ({cause})" if cause else text


def summarize(result: EvalResult) -> MetricSummary:
    """Apply the NaN rule of this module to an evaluation of one or many cell types."""
    by_type: dict[str, dict[str, float]] = {}
    reasons: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for cell_type, results, agg in _split(result):
        mean_row = agg[agg["statistic"].astype(str) == "mean"].iloc[0]
        by_type[cell_type] = {m: float(mean_row[m]) for m in _metric_columns(agg)}
        counts[cell_type] = len(results)
        for metric, value in by_type[cell_type].items():
            if not math.isfinite(value):
                reasons.setdefault(metric, []).append(reason(metric, cell_type, results))
    metrics = sorted({m for values in by_type.values() for m in values})
    means = {m: _mean_over_types([v.get(m, math.nan) for v in by_type.values()]) for m in metrics}
    return MetricSummary(
        means=means, by_cell_type=by_type, reasons={m: "; ".join(r) for m, r in reasons.items()}, n_perturbations=counts
    )


def _mean_over_types(values: list[float]) -> float:
    return float(np.mean(values)) if values and all(math.isfinite(v) for v in values) else math.nan


__all__ = ["ALL_CELLS", "MetricSummary", "summarize"]
