import numpy as np
import pandas as pd

from state_core.eval.aggregate import describe, score
from state_core.eval.registry import MetricValue


def _value(values, null=None):
    values = np.asarray(values, float)
    return MetricValue(values, np.zeros(values.size, bool) if null is None else np.asarray(null))


def test_describe_like_polars_nan_and_null():
    agg = describe(
        {"a": _value([1.0, np.nan, 3.0, 0.5]), "b": _value([1.0, 0.0, 3.0, 2.0], [False, True, False, False])}
    )
    a = dict(zip(agg["statistic"], agg["a"]))
    b = dict(zip(agg["statistic"], agg["b"]))
    assert np.isnan(a["mean"]) and a["min"] == 0.5 and a["max"] == 3.0  # NaN poisons mean only
    assert (a["25%"], a["50%"], a["75%"]) == (1.0, 3.0, 3.0)  # nearest rank, NaN sorted last
    assert b["count"] == 3 and b["null_count"] == 1 and b["mean"] == 2.0 and b["std"] == 1.0
    assert (b["25%"], b["75%"]) == (2.0, 3.0)  # round half up


def test_score_normalises_and_clips():
    cols = ["statistic", "mae", "overlap_at_N", "de_nsig_counts_real"]
    user = pd.DataFrame([["mean", 0.5, 0.6, 10.0]], columns=cols)
    base = pd.DataFrame([["mean", 1.0, 0.2, 10.0]], columns=cols)
    out = score(user, base)
    values = dict(zip(out["metric"], out["from_baseline"]))
    assert values["mae"] == 0.5 and abs(values["overlap_at_N"] - 0.5) < 1e-12
    assert "de_nsig_counts_real" not in values and values["avg_score"] == 0.5
    worse = score(pd.DataFrame([["mean", 2.0, np.nan, 1.0]], columns=cols), base)
    assert list(worse["from_baseline"]) == [0.0, 0.0, 0.0]  # negative clipped, NaN -> 0
