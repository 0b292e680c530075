"""Per-perturbation results table, its `describe()` summary, and the baseline-normalised score.

The summary reproduces polars' `describe()` that cell-eval writes to agg_results.csv: rows count,
null_count, mean, std, min, 25%, 50%, 75%, max; nulls are skipped everywhere, a NaN makes mean and std
NaN, min/max skip NaN, quantiles use the nearest rank with NaN sorted last.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from state_core.atomic import atomic_path
from state_core.errors import DataError
from state_core.eval.registry import Best, MetricValue, best_value

STATISTICS = ("count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max")
QUANTILES = {"25%": 0.25, "50%": 0.5, "75%": 0.75}


def results_frame(perts: list[str], columns: dict[str, MetricValue]) -> pd.DataFrame:
    """results.csv as a DataFrame: `perturbation` then one float column per metric (null -> NaN)."""
    data = {"perturbation": perts}
    for name, value in columns.items():
        data[name] = np.where(value.null, np.nan, value.values)
    return pd.DataFrame(data)


def _quantile_nearest(sorted_values: np.ndarray, q: float) -> float:
    # polars "nearest": index round-half-up of q * (n - 1) in the sorted (NaN-last) values
    return float(sorted_values[int(math.floor(q * (sorted_values.size - 1) + 0.5))])


def describe_column(value: MetricValue) -> list[float]:
    present = value.values[~value.null]
    n = present.size
    stats = {"count": float(n), "null_count": float(value.null.sum())}
    if n == 0:
        return [stats["count"], stats["null_count"]] + [float("nan")] * (len(STATISTICS) - 2)
    finite_or_inf = present[~np.isnan(present)]
    stats["mean"] = float(present.mean())
    stats["std"] = float(present.std(ddof=1)) if n > 1 else float("nan")
    stats["min"] = float(finite_or_inf.min()) if finite_or_inf.size else float("nan")
    stats["max"] = float(finite_or_inf.max()) if finite_or_inf.size else float("nan")
    ordered = np.sort(present)  # numpy sorts NaN last, like polars
    for label, q in QUANTILES.items():
        stats[label] = _quantile_nearest(ordered, q)
    return [stats[s] for s in STATISTICS]


def describe(columns: dict[str, MetricValue]) -> pd.DataFrame:
    """agg_results.csv: `statistic` column then one column per metric."""
    data: dict[str, list] = {"statistic": list(STATISTICS)}
    for name, value in columns.items():
        data[name] = describe_column(value)
    return pd.DataFrame(data)


def write_csv_atomic(frame: pd.DataFrame, path: Path, null_mask: dict[str, np.ndarray] | None = None) -> None:
    """Write like polars: floats in shortest round-trip form, NaN as `NaN`, null as an empty field."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            null = null_mask.get(col) if null_mask else None
            text = [repr(float(v)) if not np.isnan(v) else "NaN" for v in out[col].to_numpy()]
            if null is not None:
                text = ["" if is_null else t for t, is_null in zip(text, null, strict=True)]
            out[col] = text
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False)


def read_agg(source: str | Path | pd.DataFrame, role: str) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"{role} agg results not found: {path}\n    fix: pass the agg_results.csv of `state eval run`"
            )
        frame = pd.read_csv(path)
    if "statistic" not in frame.columns:
        raise DataError(
            f"{role} agg results have no 'statistic' column (columns: {list(frame.columns)[:8]} ...)\n"
            "    fix: pass agg_results.csv, not results.csv"
        )
    if "mean" not in set(frame["statistic"].astype(str)):
        raise DataError(f"{role} agg results have no 'mean' row\n    fix: pass an unmodified agg_results.csv")
    return frame


def score(
    user_agg: str | Path | pd.DataFrame, base_agg: str | Path | pd.DataFrame, statistic: str = "mean"
) -> pd.DataFrame:
    """cell-eval's baseline-normalised score: columns `metric, from_baseline`, last row `avg_score`.

    ZERO-best metrics: 1 - user/base; ONE-best: (user - base)/(1 - base); NaN -> 0; clipped below at 0.
    """
    user, base = read_agg(user_agg, "user"), read_agg(base_agg, "baseline")
    if list(user.columns) != list(base.columns):
        raise DataError(
            f"user and baseline agg results have different columns:\n  user {list(user.columns)}\n"
            f"  base {list(base.columns)}\n    fix: evaluate both with the same profile and skip list"
        )
    u_row = user[user["statistic"].astype(str) == statistic].iloc[0]
    b_row = base[base["statistic"].astype(str) == statistic].iloc[0]
    zero, one = [], []
    for col in user.columns[1:]:
        best = best_value(col)
        if best is Best.ZERO:
            zero.append(col)
        elif best is Best.ONE:
            one.append(col)
    with np.errstate(divide="ignore", invalid="ignore"):
        u0, b0 = u_row[zero].to_numpy(float), b_row[zero].to_numpy(float)
        u1, b1 = u_row[one].to_numpy(float), b_row[one].to_numpy(float)
        scores = np.concatenate([1.0 - u0 / b0, (u1 - b1) / (1.0 - b1)])
    scores[np.isnan(scores)] = 0.0
    scores = np.clip(scores, 0.0, None)
    return pd.DataFrame(
        {"metric": zero + one + ["avg_score"], "from_baseline": np.concatenate([scores, [scores.mean()]])}
    )
