"""The promotion gate decides on the chosen metric, in the chosen direction, against baseline and serving."""

from __future__ import annotations

import math

import pytest

from state_core.errors import ConfigError
from state_core.pipeline_ops.promotion import gate_against_repository, should_promote
from state_core.pipeline_ops.publish_record import PublishRecord, write_record


def test_promotes_when_better_than_baseline_and_nothing_serving():
    decision = should_promote(
        {"pearson": 0.8}, {"pearson": 0.5}, None, "pearson", higher_is_better=True
    )
    assert decision.promote
    assert decision.serving is None


def test_holds_when_not_better_than_baseline():
    decision = should_promote(
        {"pearson": 0.5}, {"pearson": 0.5}, None, "pearson", higher_is_better=True
    )
    assert not decision.promote
    assert "baseline" in decision.reason


def test_holds_when_worse_than_serving():
    decision = should_promote(
        {"mse": 0.2}, {"mse": 0.9}, {"mse": 0.1}, "mse", higher_is_better=False
    )
    assert not decision.promote
    assert "serving" in decision.reason


def test_lower_is_better_promotes_smaller_value():
    decision = should_promote(
        {"mse": 0.05}, {"mse": 0.9}, {"mse": 0.1}, "mse", higher_is_better=False
    )
    assert decision.promote


def test_min_improvement_is_a_required_margin():
    decision = should_promote(
        {"r": 0.61}, {"r": 0.6}, None, "r", higher_is_better=True, min_improvement=0.05
    )
    assert not decision.promote


@pytest.mark.parametrize("candidate, baseline", [(math.nan, 0.1), (0.9, math.nan)])
def test_nan_never_passes(candidate, baseline):
    assert not should_promote(
        {"r": candidate}, {"r": baseline}, None, "r", higher_is_better=True
    ).promote


def test_missing_metric_names_it_and_the_known_ones():
    with pytest.raises(ConfigError, match="overlap_at_N.*pearson"):
        should_promote(
            {"pearson": 1.0},
            {"pearson": 0.0},
            None,
            "overlap_at_N",
            higher_is_better=True,
        )


def test_markdown_states_the_verdict():
    text = should_promote({"r": 0.1}, {"r": 0.2}, None, "r", True).as_markdown()
    assert "HOLD" in text and "| baseline | 0.2 |" in text


def test_repository_gate_reads_serving_metrics(tmp_path):
    (tmp_path / "state_st" / "3").mkdir(parents=True)
    write_record(str(tmp_path), PublishRecord("state_st", 3, {"r": 0.9}))
    decision = gate_against_repository(
        {"r": 0.8}, {"r": 0.1}, str(tmp_path), "state_st", "r", True
    )
    assert not decision.promote and decision.serving == pytest.approx(0.9)


def test_repository_gate_holds_against_unrecorded_serving_version(tmp_path):
    (tmp_path / "state_st" / "1").mkdir(parents=True)
    decision = gate_against_repository(
        {"r": 0.8}, {"r": 0.1}, str(tmp_path), "state_st", "r", True
    )
    assert not decision.promote and "no recorded" in decision.reason
