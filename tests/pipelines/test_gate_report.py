"""The gate's comparison page: candidate, baseline and the serving version on one page, with the outcome."""

from __future__ import annotations

import dataclasses

from state_core.eval import evaluate
from state_core.eval.synthetic_pairs import PairSpec, make_pair, make_pred
from state_core.pipeline_ops.comparison import COMPARED, COMPARISON_FILE, SameCellsComparison
from state_core.pipeline_ops.promotion import gate_on_same_cells, write_gate_report
from state_core.pipeline_ops.same_cells import SERVING_EVAL

SPEC = PairSpec(n_genes=40, n_perts=4, cells_per_group=10, n_programme_genes=8, seed=5)


def test_page_shows_every_model_per_cell_type_and_the_gate(tmp_path):
    real, pred = make_pair(SPEC)
    worse = make_pred(real, dataclasses.replace(SPEC, noise_sd=SPEC.noise_sd * 4, seed=6))
    for a in (real, pred, worse):
        a.obs["cell_type"] = ["K562" if i % 2 else "RPE1" for i in range(a.n_obs)]
    kw = dict(
        pert_col=SPEC.pert_col,
        control_pert=SPEC.control_pert,
        profile="minimal",
        celltype_col="cell_type",
        celltype_folders=True,
    )
    means = {}
    for name, folder, adata in (
        ("candidate", tmp_path / "cand", pred),
        ("baseline", tmp_path / "base", worse),
        ("serving", tmp_path / "cmp" / SERVING_EVAL, pred),
    ):
        res = evaluate(adata, real, outdir=folder, **kw)
        means[name] = res.agg[res.agg["statistic"] == "mean"]["mse"].mean()
    comparison = SameCellsComparison(
        COMPARED,
        "Compared with serving version 3 on the candidate's test cells.",
        serving_version=3,
        candidate={"mse": means["candidate"]},
        serving={"mse": means["serving"]},
    )
    (tmp_path / "cmp" / COMPARISON_FILE).write_text(comparison.to_json())
    decision = gate_on_same_cells({"mse": means["candidate"]}, {"mse": means["baseline"]}, comparison, "mse", False)
    page = write_gate_report(
        decision, tmp_path / "cand", tmp_path / "base", tmp_path / "cmp", tmp_path / "report.html"
    ).read_text()
    assert not decision.promote  # the same predictions as the serving model do not beat it
    assert "Gate: HOLD" in page and "beats the baseline but not the serving model" in page
    assert "<th>candidate</th><th>baseline</th><th>serving v3</th>" in page and "Δ vs serving v3" in page
    assert all(f"<h2>{scope}</h2>" in page for scope in ("all cell types", "K562", "RPE1"))
    assert "mse (lower is better) beats the baseline and the serving model" in page
    assert "<tr class='gatemetric'><td>mse</td>" in page
