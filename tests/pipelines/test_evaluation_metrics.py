"""Evaluation results reduce to one number per metric and survive the trip through KFP Metrics metadata."""

from __future__ import annotations

import json
import math

import pytest

from state_core.errors import ArtifactError
from state_core.pipeline_ops.evaluation import (
    mean_over_files,
    metrics_from_metadata,
    metrics_to_metadata,
)

AGG = "statistic,pearson_delta,mse\ncount,3,3\nmean,{p},{m}\nstd,0.1,0.2\n"


def test_means_are_averaged_over_cell_type_files(tmp_path):
    (tmp_path / "a_agg_results.csv").write_text(AGG.format(p=0.4, m=1.0))
    (tmp_path / "b_agg_results.csv").write_text(AGG.format(p=0.8, m="NaN"))
    means = mean_over_files(sorted(tmp_path.glob("*agg_results.csv")))
    assert means["pearson_delta"] == pytest.approx(0.6)
    assert math.isnan(means["mse"])


def test_missing_mean_row_names_the_file(tmp_path):
    path = tmp_path / "agg_results.csv"
    path.write_text("statistic,mse\ncount,3\n")
    with pytest.raises(ArtifactError, match="agg_results.csv"):
        mean_over_files([path])


def test_nan_metrics_round_trip_through_strict_json():
    metrics = {"pearson_delta": 0.5, "de_spearman_sig": math.nan}
    metadata = json.loads(json.dumps(metrics_to_metadata(metrics), allow_nan=False))
    back = metrics_from_metadata({**metadata, "display_name": "metrics"})
    assert (
        back["pearson_delta"] == 0.5
        and math.isnan(back["de_spearman_sig"])
        and "display_name" not in back
    )


def test_reports_of_all_cell_types_end_up_in_one_page(tmp_path):
    from state_core.pipeline_ops.evaluation import combine_reports

    for cell_type in ("hepg2", "k562"):
        (tmp_path / cell_type).mkdir()
        (tmp_path / cell_type / "report.html").write_text(
            f"<html><body><p>{cell_type} table</p></body></html>"
        )
    page = combine_reports(
        sorted(tmp_path.rglob("report.html")), tmp_path / "all.html"
    ).read_text()
    assert (
        page.count("<section>") == 2
        and "hepg2 table" in page
        and "Cell type: k562" in page
    )
