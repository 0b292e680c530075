import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from state_core.errors import ConfigError, DataError
from state_core.eval import build_baseline, evaluate, profile_metrics, score, write_report

FULL_COLUMNS = [
    "perturbation", "overlap_at_N", "overlap_at_50", "overlap_at_100", "overlap_at_200", "overlap_at_500",
    "precision_at_N", "precision_at_50", "precision_at_100", "precision_at_200", "precision_at_500",
    "de_spearman_sig", "de_direction_match", "de_spearman_lfc_sig", "de_sig_genes_recall",
    "de_nsig_counts_real", "de_nsig_counts_pred", "pr_auc", "roc_auc", "pearson_delta", "mse", "mae",
    "mse_delta", "mae_delta", "discrimination_score_l1", "discrimination_score_l2",
    "discrimination_score_cosine", "pearson_edistance", "clustering_agreement",
]  # fmt: skip


def _run(pair, spec, tmp_path, **kw):
    real, pred = pair
    return evaluate(pred, real, pert_col=spec.pert_col, control_pert=spec.control_pert, outdir=tmp_path, **kw)


def test_full_profile_writes_cell_eval_files(tiny_pair, tiny_spec, tmp_path):
    result = _run(tiny_pair, tiny_spec, tmp_path)
    assert list(result.results.columns) == FULL_COLUMNS
    assert list(result.agg["statistic"]) == ["count", "null_count", "mean", "std", "min", "25%", "50%", "75%", "max"]
    for name in ("results.csv", "agg_results.csv", "real_de.csv", "pred_de.csv"):
        assert (tmp_path / name).is_file()
    assert result.results["perturbation"].tolist() == sorted(result.results["perturbation"])
    assert (result.results["discrimination_score_l1"] == 1.0).all()  # good model finds every pert


def test_perfect_prediction_scores_perfectly(tiny_pair, tiny_spec, tmp_path):
    real, _ = tiny_pair
    res = evaluate(
        real, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert, profile="minimal"
    ).results
    assert np.allclose(res["mae"], 0) and np.allclose(res["pearson_delta"], 1)
    assert (res["de_nsig_counts_real"] == res["de_nsig_counts_pred"]).all()
    expected = ["perturbation", "overlap_at_N", "precision_at_N", "de_nsig_counts_real", "de_nsig_counts_pred"]
    expected += ["pearson_delta", "mse", "mae", "discrimination_score_l1"]
    assert list(res.columns) == expected


def test_pds_profile_skips_de(tiny_pair, tiny_spec, tmp_path):
    result = _run(tiny_pair, tiny_spec, tmp_path, profile="pds")
    assert list(result.results.columns) == ["perturbation", "discrimination_score_l1"]
    assert not (tmp_path / "real_de.csv").exists()


def test_precomputed_de_gives_same_values(tiny_pair, tiny_spec, tmp_path):
    first = _run(tiny_pair, tiny_spec, tmp_path / "a", profile="de")
    again = _run(tiny_pair, tiny_spec, tmp_path / "b", profile="de",
                 de_real=tmp_path / "a" / "real_de.csv", de_pred=tmp_path / "a" / "pred_de.csv")  # fmt: skip
    pd.testing.assert_frame_equal(first.results, again.results)


def test_gene_order_mismatch_is_a_data_error(tiny_pair, tiny_spec):
    real, pred = tiny_pair
    with pytest.raises(DataError, match="gene names or order"):
        evaluate(pred[:, ::-1], real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert, profile="pds")


def test_missing_perturbation_and_control_are_data_errors(tiny_pair, tiny_spec):
    real, pred = tiny_pair
    fewer = pred[pred.obs[tiny_spec.pert_col] != "GENE0000"]
    with pytest.raises(DataError, match="perturbation sets differ"):
        evaluate(fewer, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert)
    with pytest.raises(DataError, match="control 'NTC' not found"):
        evaluate(pred, real, pert_col=tiny_spec.pert_col, control_pert="NTC")
    with pytest.raises(DataError, match="perturbation column 'gene'"):
        evaluate(pred, real, control_pert=tiny_spec.control_pert)


def test_bad_scale_and_unknown_profile(tiny_pair, tiny_spec):
    real, pred = tiny_pair
    big = ad.AnnData(X=np.asarray(pred.X) + 20.5, obs=pred.obs, var=pred.var)
    with pytest.raises(DataError, match="not a log1p scale"):
        evaluate(big, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert)
    with pytest.raises(ConfigError, match="unknown profile"):
        profile_metrics("everything")


def test_counts_input_is_log_normalised_without_touching_it(tiny_pair, tiny_spec):
    real, pred = tiny_pair
    counts = ad.AnnData(X=np.round(np.expm1(np.asarray(pred.X))), obs=pred.obs, var=pred.var)
    before = counts.X.copy()
    res = evaluate(counts, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert, profile="vcc")
    assert np.array_equal(counts.X, before)
    assert res.results["mae"].notna().all()


def test_baseline_score_and_report(tiny_pair, tiny_spec, tmp_path):
    real, pred = tiny_pair
    kw = dict(pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert)
    base = build_baseline(real, output_path=tmp_path / "base.h5ad", output_de_path=tmp_path / "base_de.csv", **kw)
    assert base.n_obs == real.n_obs
    model = evaluate(pred, real, outdir=tmp_path / "model", profile="vcc", **kw)
    ref = evaluate(base, real, outdir=tmp_path / "base", profile="vcc", de_pred=tmp_path / "base_de.csv", **kw)
    table = score(model.agg, ref.agg)
    assert table["metric"].tolist() == ["mae", "overlap_at_N", "discrimination_score_l1", "avg_score"]
    assert table["from_baseline"].iloc[-1] > 0.5  # the noisy copy beats the mean baseline
    paths = write_report(tmp_path / "model")
    text = paths["html"].read_text()
    assert "<svg" in text and "overlap_at_N" in text
    links = re.findall(r"""(?:src|href)=["']([^"']*)""", text)
    assert all(link.startswith("#") for link in links), links  # no external assets: renders offline
    assert "| mae |" in paths["md"].read_text()


def test_celltype_split_prefixes_files(tiny_pair, tiny_spec, tmp_path):
    real, pred = tiny_pair
    real, pred = real.copy(), pred.copy()
    for a in (real, pred):
        a.obs["cell_type"] = np.where(np.arange(a.n_obs) % 2 == 0, "K562", "HepG2/C3A")
    res = evaluate(pred, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert,
                   profile="pds", celltype_col="cell_type", outdir=tmp_path)  # fmt: skip
    assert (tmp_path / "K562_results.csv").is_file() and (tmp_path / "HepG2-C3A_results.csv").is_file()
    assert res.results.columns[0] == "celltype"


def test_float16_input_and_embedding_key(tiny_pair, tiny_spec):
    real, pred = tiny_pair
    half = ad.AnnData(X=np.asarray(pred.X).astype(np.float16), obs=pred.obs, var=pred.var)
    rng = np.random.default_rng(0)
    for a in (real, half):
        a.obsm["X_emb"] = rng.normal(size=(a.n_obs, 4)).astype(np.float32)
    res = evaluate(half, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert,
                   profile="anndata", embed_key="X_emb", skip_metrics=["clustering_agreement"]).results  # fmt: skip
    assert half.X.dtype == np.float16  # input untouched
    assert res["discrimination_score_l1"].min() == 1.0  # l1 always uses X
    assert res["discrimination_score_l2"].between(1 / 5 - 1e-12, 1).all()  # random embedding: any rank
    assert "clustering_agreement" not in res.columns


def test_unclipped_predictions_below_zero_are_scored_but_real_data_is_not(tiny_pair, tiny_spec, tmp_path):
    # perturb_mean adds a shift to log-expression without clipping: its predictions may dip below 0
    real, pred = tiny_pair
    shifted = pred.copy()
    x = np.asarray(shifted.X.todense() if hasattr(shifted.X, "todense") else shifted.X, dtype=np.float32)
    shifted.X = x - 0.05
    res = evaluate(shifted, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert).results
    plain = evaluate(pred, real, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert).results
    # the same shift on controls and perturbed cells leaves every delta as it was
    np.testing.assert_allclose(res["pearson_delta"], plain["pearson_delta"], atol=1e-6)
    assert "de_direction_match" in res
    with pytest.raises(DataError, match="real X has negative values"):
        evaluate(pred, shifted, pert_col=tiny_spec.pert_col, control_pert=tiny_spec.control_pert)


def test_two_threads_give_the_same_files(tiny_pair, tiny_spec, tmp_path):
    # with 2+ threads the predicted DE table is computed in a forked child (state_core.eval.background)
    one = _run(tiny_pair, tiny_spec, tmp_path / "one", num_threads=1)
    two = _run(tiny_pair, tiny_spec, tmp_path / "two", num_threads=2)
    for name in ("real_de.csv", "pred_de.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    pd.testing.assert_frame_equal(one.results, two.results, rtol=1e-12)  # BLAS threads may reorder sums
