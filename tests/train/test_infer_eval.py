"""`tx infer` then `eval run`: the predictions are scored (not the input against itself), and the
self-scoring mistake is refused with a clear error."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from state_core.cli.main import main
from state_core.eval import evaluate
from state_core.train.infer import InferOptions, infer_file

EVAL = ["--pert-col", "gene", "--control-pert", "non-targeting", "--profile", "minimal", "--no-report"]


@pytest.fixture(scope="module")
def inferred(trained, synth_experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer_eval")
    src = synth_experiment.h5ad_paths[0]
    pred = infer_file(trained, src, out / "pred.h5ad", options=InferOptions(seed=1), eval_pair=out / "pair")
    return src, pred, out / "pair"


def _proper_means(src, pred) -> pd.Series:
    """The predictions scored by hand: obsm X_hvg_pred of the output against obsm X_hvg of the real cells."""
    real_in, out = ad.read_h5ad(src), ad.read_h5ad(pred)
    labels = real_in.obs[["gene"]].copy()
    names = [f"f{i}" for i in range(real_in.obsm["X_hvg"].shape[1])]
    p = ad.AnnData(X=np.asarray(out.obsm["X_hvg_pred"], dtype=np.float32), obs=labels.copy())
    r = ad.AnnData(X=np.asarray(real_in.obsm["X_hvg"], dtype=np.float32), obs=labels.copy())
    p.var_names = r.var_names = names
    agg = evaluate(p, r, pert_col="gene", control_pert="non-targeting", profile="minimal").agg
    return agg.set_index("statistic").loc["mean"]


def _cli_means(tmp_path, *args) -> pd.Series:
    assert main(["eval", "run", *args, "-o", str(tmp_path), *EVAL]) == 0
    return pd.read_csv(tmp_path / "agg_results.csv").set_index("statistic").loc["mean"]


@pytest.mark.parametrize("how", ["metadata", "explicit", "pair"])
def test_eval_run_on_infer_output_scores_the_predictions(inferred, tmp_path, how, capsys):
    src, pred, pair = inferred
    args = {
        "metadata": ["-ap", str(pred), "-ar", str(src)],
        "explicit": ["-ap", str(pred), "-ar", str(src), "--pred-key", "obsm:X_hvg_pred", "--real-key", "obsm:X_hvg"],
        "pair": ["-ap", str(pair / "adata_pred.h5ad"), "-ar", str(pair / "adata_real.h5ad")],
    }[how]
    got, want = _cli_means(tmp_path, *args), _proper_means(src, pred)
    pd.testing.assert_series_equal(got.astype(float), want.astype(float), check_names=False, rtol=1e-6)
    assert want["pearson_delta"] < 0.999 and want["mse"] > 0  # not the input scored against itself
    if how == "metadata":
        assert "obsm:X_hvg_pred against real obsm:X_hvg (tx infer metadata)" in capsys.readouterr().out


def test_scoring_the_input_against_itself_is_refused(inferred, tmp_path, capsys):
    src, pred, _ = inferred
    code = main(["eval", "run", "-ap", str(pred), "-ar", str(src), "--pred-key", "X", "-o", str(tmp_path), *EVAL])
    err = capsys.readouterr().err
    assert code == 2 and "identical" in err and "--pred-key obsm:X_hvg_pred" in err and "Traceback" not in err
    assert not (tmp_path / "agg_results.csv").exists()


def test_missing_prediction_key_is_refused(inferred, tmp_path, capsys):
    src, pred, _ = inferred
    code = main(
        ["eval", "run", "-ap", str(pred), "-ar", str(src), "--pred-key", "obsm:X_pred", "-o", str(tmp_path), *EVAL]
    )
    err = capsys.readouterr().err
    assert code == 2 and "has no obsm:X_pred" in err and "X_hvg_pred" in err
