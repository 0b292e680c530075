"""Scheduled retraining through kfp.local, three runs on one experiment TOML URI whose files get rewritten.

    run A: data without perturbation P_NEW, and with the labels of two test perturbations swapped (a
           sample-sheet mix-up)                                   -> trains, publishes version 1
    run B: same URI, rewritten: corrected labels, more cells, P_NEW -> trains again (no cache hit on data
           steps), gate scores version 1 on B's test cells (P_NEW left out, with a note), publishes version 2
    run C: same URI, data unchanged                               -> freshness check says no, nothing runs

The data uses the README's non-default columns (target_gene, batch_var, control TARGET1), which every step
must receive from the retraining pipeline's parameters. Perturbation effects are stronger than the synthetic
default and version 1 learned two of them under each other's name, so on the corrected test cells the
retrained model is clearly the better one and the gate's verdict is not a coin flip on a tiny test split.
"""

from __future__ import annotations

import hashlib
import json

import anndata as ad
import numpy as np
import pytest

from pipelines.local_run import LOCAL_BASELINE_OVERRIDES, LOCAL_TRAIN_OVERRIDES, RetrainResult, retrain_locally
from state_core.data.preprocess import preprocess_train_adata
from state_core.data.synth import SynthSpec, make_synthetic_adata
from state_core.pipeline_ops.comparison import read_comparison
from state_core.pipeline_ops.fingerprint import experiment_fingerprint
from state_core.pipeline_ops.publish_record import serving_record

# Three full pipeline runs: about 8 min on two idle cores, far more on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

COLUMNS = {"pert_col": "target_gene", "cell_type_key": "cell_line", "batch_col": "batch_var", "control_pert": "TARGET1"}
DATA_STEPS = ("split-cells", "embed-cells", "train-model", "train-model-2", "evaluate-model", "evaluate-model-2")


def _write_experiment(root, adata: ad.AnnData, test_perts: list[str], val_perts: list[str]) -> None:
    data = root / "screen"
    data.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(data / "part0.h5ad")
    fewshot_cell_type = str(adata.obs["cell_line"].cat.categories[0])
    (root / "experiment.toml").write_text(
        '[datasets]\nscreen = "screen"\n\n[training]\nscreen = "train"\n\n'
        f'[fewshot."screen.{fewshot_cell_type}"]\nval = {json.dumps(val_perts)}\ntest = {json.dumps(test_perts)}\n'
    )


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    # The scale of `state pipeline run --local`: smaller test groups leave cell-eval no DE genes to score.
    spec = SynthSpec(
        n_cells=3000,
        n_genes=200,
        n_cell_types=3,
        n_perturbations=12,
        n_batches=2,
        seed=0,
        programme_effect=2.0,
        programme_fraction=0.12,
        pert_col="target_gene",
        cell_type_key="cell_line",
        batch_col="batch_var",
        control_pert="TARGET1",
    )
    full = preprocess_train_adata(make_synthetic_adata(spec), num_hvgs=64)  # one HVG set for both versions
    perts = [str(p) for p in full.uns["synth"]["perturbations"]]
    new_pert, val_perts, test_perts = perts[-1], perts[:3], perts[3:6]
    first = full[(full.obs["target_gene"] != new_pert).to_numpy() & (np.arange(full.n_obs) < 2000)].copy()
    swapped = {test_perts[0]: test_perts[1], test_perts[1]: test_perts[0]}
    labels = first.obs["target_gene"].astype(str).map(lambda p: swapped.get(p, p))
    first.obs["target_gene"] = labels.astype("category")
    experiment = root / "experiment"
    _write_experiment(experiment, first, test_perts, val_perts)

    arguments = {
        "experiment_toml": str(experiment / "experiment.toml"),
        "model_repository": str(root / "repository"),
        "triton_backend": "python",
        "gate_metric": "de_direction_match",
        "higher_is_better": True,
        "train_overrides": LOCAL_TRAIN_OVERRIDES,
        "baseline_overrides": LOCAL_BASELINE_OVERRIDES,
        **COLUMNS,
    }
    pipeline_root = root / "kfp"
    run_a = retrain_locally(pipeline_root, arguments)
    record_a = serving_record(arguments["model_repository"], "state_st")

    _write_experiment(experiment, full, [*test_perts, new_pert], val_perts)  # same URI, new contents
    fingerprint_b = experiment_fingerprint(arguments["experiment_toml"])
    run_b = retrain_locally(pipeline_root, arguments)
    record_b = serving_record(arguments["model_repository"], "state_st")
    run_c = retrain_locally(pipeline_root, arguments)
    return {
        "a": run_a,
        "b": run_b,
        "c": run_c,
        "record_a": record_a,
        "record_b": record_b,
        "fingerprint_b": fingerprint_b,
        "new_pert": new_pert,
        "repository": root / "repository",
        "full": full,
    }


def test_first_run_trains_and_publishes(three_runs):
    run_a: RetrainResult = three_runs["a"]
    assert run_a.published_version == 1
    assert set(DATA_STEPS) <= run_a.executed


def test_changed_data_behind_the_same_uri_retrains_every_data_step(three_runs):
    run_b: RetrainResult = three_runs["b"]
    assert set(DATA_STEPS) <= run_b.executed, f"cache hits on data steps: {set(DATA_STEPS) - run_b.executed}"
    assert run_b.published_version == 2


def test_published_model_differs_and_records_the_trained_fingerprint(three_runs):
    graph = three_runs["repository"] / "state_st_onnx"  # the served ensemble's graph model holds model.onnx
    model_files = [graph / str(v) / "model.onnx" for v in (1, 2)]
    assert _sha256(model_files[0]) != _sha256(model_files[1])
    record_a, record_b = three_runs["record_a"], three_runs["record_b"]
    assert record_b.data_fingerprint == three_runs["fingerprint_b"] != record_a.data_fingerprint
    trained = json.loads((three_runs["b"].task_dir("train-model") / "executor_output.json").read_text())
    metadata = trained["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert metadata["data_fingerprint"] == record_b.data_fingerprint


def test_gate_scores_both_models_on_the_same_test_cells(three_runs):
    run_b: RetrainResult = three_runs["b"]
    comparison_dir = run_b.task_dir("score-serving-model") / "comparison"
    comparison = read_comparison(comparison_dir)
    assert comparison.status == "compared" and comparison.serving_version == 1
    assert comparison.skipped_labels == {"perturbation": [three_runs["new_pert"]]}
    serving = ad.read_h5ad(next((comparison_dir / "serving_eval").rglob("adata_real.h5ad")))
    candidate = ad.read_h5ad(next((comparison_dir / "candidate_eval").rglob("adata_real.h5ad")))
    assert serving.n_obs == candidate.n_obs == comparison.n_test_cells > 0
    order_s = np.lexsort(serving.X.T)
    order_c = np.lexsort(candidate.X.T)
    np.testing.assert_array_equal(serving.X[order_s], candidate.X[order_c])
    assert three_runs["new_pert"] not in set(serving.obs["target_gene"].astype(str))
    decision = (run_b.task_dir("promotion-gate") / "decision").read_text()
    assert "PROMOTE" in decision and three_runs["new_pert"] in decision and "Left out" in decision


def test_unchanged_data_skips_the_run(three_runs):
    run_c: RetrainResult = three_runs["c"]
    assert run_c.published_version is None
    assert run_c.executed == {"fingerprint-data", "data-changed"}
