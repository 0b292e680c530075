"""One number per metric over cell types, with the one NaN rule, and reading stored evaluations back."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from state_core.eval import evaluate
from state_core.eval.evaluation import EvalResult
from state_core.eval.result_files import read_result
from state_core.eval.summary import summarize


def _two_cell_types(pearson_b: list[float]) -> EvalResult:
    results = pd.DataFrame(
        {
            "celltype": ["A", "A", "B", "B"],
            "perturbation": ["p1", "p2", "p1", "p2"],
            "mse": [1.0, 3.0, 2.0, 2.0],
            "pearson_delta": [0.4, 0.6, *pearson_b],
        }
    )
    agg = pd.DataFrame(
        {
            "celltype": ["A", "B"],
            "statistic": ["mean", "mean"],
            "mse": [2.0, 2.0],
            "pearson_delta": [0.5, sum(pearson_b) / 2],
        }
    )
    return EvalResult(results, agg)


def test_means_are_averaged_over_cell_types():
    summary = summarize(_two_cell_types([0.6, 0.8]))
    assert summary.by_cell_type["B"]["pearson_delta"] == pytest.approx(0.7)
    assert summary.means == {"mse": 2.0, "pearson_delta": pytest.approx(0.6)}
    assert summary.reasons == {}


def test_a_metric_undefined_in_one_cell_type_is_undefined_overall_with_the_reason():
    summary = summarize(_two_cell_types([math.nan, 0.8]))
    assert math.isnan(summary.means["pearson_delta"]) and summary.means["mse"] == 2.0
    assert summary.by_cell_type["A"]["pearson_delta"] == pytest.approx(0.5)
    assert summary.reasons["pearson_delta"].startswith("undefined in B: NaN for 1 of 2 perturbations")
    assert "constant" in summary.reasons["pearson_delta"]
    data = json.loads(json.dumps(summary.to_json_dict("full"), allow_nan=False))  # strict JSON
    assert "pearson_delta" not in data["mean"] and data["cell_types"]["A"]["pearson_delta"] == pytest.approx(0.5)
    assert data["undefined"]["pearson_delta"] == summary.reasons["pearson_delta"]


@pytest.mark.parametrize("folders", [True, False])
def test_stored_evaluation_reads_back_as_returned(tiny_pair, tiny_spec, tmp_path, folders):
    real, pred = (a.copy() for a in tiny_pair)
    for a in (real, pred):
        a.obs["cell_type"] = ["A" if i % 2 else "B" for i in range(a.n_obs)]
    res = evaluate(
        pred,
        real,
        pert_col=tiny_spec.pert_col,
        control_pert=tiny_spec.control_pert,
        profile="pds",
        celltype_col="cell_type",
        outdir=tmp_path,
        celltype_folders=folders,
    )
    assert (tmp_path / "A" / "agg_results.csv").is_file() == folders
    back = read_result(tmp_path)
    assert summarize(back).means == pytest.approx(summarize(res).means)
    pd.testing.assert_frame_equal(back.results, res.results, check_dtype=False)
