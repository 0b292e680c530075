"""Evaluation metrics survive the trip through KFP Metrics metadata (NaN is not JSON a backend accepts).

The reduction to one number per metric and its NaN rule are tested in tests/eval/test_summary.py.
"""

from __future__ import annotations

import json
import math

from state_core.pipeline_ops.evaluation import metrics_from_metadata, metrics_to_metadata


def test_nan_metrics_round_trip_through_strict_json():
    metrics = {"pearson_delta": 0.5, "de_spearman_sig": math.nan}
    metadata = json.loads(json.dumps(metrics_to_metadata(metrics), allow_nan=False))
    back = metrics_from_metadata({**metadata, "display_name": "metrics"})
    assert back["pearson_delta"] == 0.5 and math.isnan(back["de_spearman_sig"]) and "display_name" not in back
