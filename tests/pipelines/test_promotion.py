"""The promotion gate decides on the chosen metric, in the chosen direction, against baseline and serving."""

from __future__ import annotations

import math

import pytest

from state_core.errors import ConfigError
from state_core.pipeline_ops.comparison import COMPARED, IMPOSSIBLE, NONE_SERVING, SameCellsComparison
from state_core.pipeline_ops.promotion import gate_on_same_cells, should_promote


def test_promotes_when_better_than_baseline_and_nothing_serving():
    decision = should_promote({"pearson": 0.8}, {"pearson": 0.5}, None, "pearson", higher_is_better=True)
    assert decision.promote
    assert decision.serving is None


def test_holds_when_not_better_than_baseline():
    decision = should_promote({"pearson": 0.5}, {"pearson": 0.5}, None, "pearson", higher_is_better=True)
    assert not decision.promote
    assert "baseline" in decision.reason


def test_holds_when_worse_than_serving():
    decision = should_promote({"mse": 0.2}, {"mse": 0.9}, {"mse": 0.1}, "mse", higher_is_better=False)
    assert not decision.promote
    assert "serving" in decision.reason


def test_lower_is_better_promotes_smaller_value():
    decision = should_promote({"mse": 0.05}, {"mse": 0.9}, {"mse": 0.1}, "mse", higher_is_better=False)
    assert decision.promote


def test_min_improvement_is_a_required_margin():
    decision = should_promote({"r": 0.61}, {"r": 0.6}, None, "r", higher_is_better=True, min_improvement=0.05)
    assert not decision.promote


@pytest.mark.parametrize("candidate, baseline", [(math.nan, 0.1), (0.9, math.nan)])
def test_nan_never_passes(candidate, baseline):
    assert not should_promote({"r": candidate}, {"r": baseline}, None, "r", higher_is_better=True).promote


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


def _compared(candidate: float, serving: float, note: str = "Compared on 40 test cells.") -> SameCellsComparison:
    return SameCellsComparison(
        COMPARED, note, serving_version=3, candidate={"r": candidate}, serving={"r": serving}, n_test_cells=40
    )


def test_same_cells_gate_uses_the_re_evaluated_serving_value_not_its_record():
    # The serving model recorded 0.2 at its publish time on other data; on today's cells it scores 0.9.
    decision = gate_on_same_cells({"r": 0.8}, {"r": 0.1}, _compared(0.8, 0.9), "r", True)
    assert not decision.promote and decision.serving == pytest.approx(0.9)
    assert "same test cells" in decision.reason


def test_same_cells_gate_compares_candidate_on_the_reduced_cells():
    # Full test split: 0.5 (includes a new perturbation); on the cells both models know: 0.95 vs 0.9.
    comparison = _compared(0.95, 0.9, "Left out of this comparison: perturbation: P9.")
    decision = gate_on_same_cells({"r": 0.5}, {"r": 0.1}, comparison, "r", True)
    assert decision.promote and decision.candidate_same_cells == pytest.approx(0.95)
    assert "P9" in decision.as_markdown()


def test_same_cells_gate_holds_when_the_serving_model_cannot_be_scored():
    comparison = SameCellsComparison(IMPOSSIBLE, "Serving version 2 has no stored evaluation_run/.")
    decision = gate_on_same_cells({"r": 0.8}, {"r": 0.1}, comparison, "r", True)
    assert not decision.promote and "evaluation_run" in decision.reason


def test_same_cells_gate_with_nothing_serving_needs_only_the_baseline():
    decision = gate_on_same_cells({"r": 0.8}, {"r": 0.1}, SameCellsComparison(NONE_SERVING, "none"), "r", True)
    assert decision.promote and decision.serving is None


def test_same_cells_gate_checks_the_baseline_first():
    decision = gate_on_same_cells({"r": 0.05}, {"r": 0.1}, _compared(0.95, 0.1), "r", True)
    assert not decision.promote and "baseline" in decision.reason
