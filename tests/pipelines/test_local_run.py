"""`state pipeline run --local`: the training pipeline through kfp.local on the bundled synthetic dataset.

One run publishes a served model version (and answers a gRPC query when tritonserver is installed); a second
run over the same data reuses the cached steps, does not beat the model now serving, and publishes nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json

import pytest

from pipelines.local_run import LocalRunOptions, LocalRunResult, run_local
from state_core.serve.repo_store import RepositoryStore

pytestmark = pytest.mark.slow

HAS_TRITONSERVER = importlib.util.find_spec("pytriton") is not None


@pytest.fixture(scope="module")
def printed_runs(tmp_path_factory) -> tuple[LocalRunResult, LocalRunResult, str]:
    out = tmp_path_factory.mktemp("pipeline_out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        first = run_local(LocalRunOptions(out_dir=str(out), query=HAS_TRITONSERVER))
        print(first.summary())
    second = run_local(LocalRunOptions(out_dir=str(out), query=False))
    return first, second, printed.getvalue()


@pytest.fixture(scope="module")
def two_runs(printed_runs) -> tuple[LocalRunResult, LocalRunResult]:
    return printed_runs[:2]


def test_a_run_prints_one_line_per_stage_and_a_summary(printed_runs):
    first, _, text = printed_runs
    lines = text.splitlines()
    assert len(lines) <= 40, text
    stages = [line.split()[:3] for line in lines if line.startswith("  ") and not line.startswith("   ")]
    assert ["train", "candidate", "ok"] in stages and ["promotion", "gate", "ok"] in stages, text
    assert f"report:   {first.report_html}" in text and f"full log: {first.log_file}" in text
    assert "Streamed logs" in first.log_file.read_text() and "Streamed logs" not in text


def test_first_run_publishes_a_served_version_with_its_record(two_runs):
    first, _ = two_runs
    assert first.published_version == 1
    record = json.loads((first.model_repository / "state_st" / "1" / "publish_record.json").read_text())
    assert record["metrics"]["de_direction_match"] == pytest.approx(first.metrics["de_direction_match"])
    assert "specific" in (first.model_repository / "state_st" / "config.pbtxt").read_text()


def test_first_run_leaves_metrics_report_and_gate_decision(two_runs):
    first, _ = two_runs
    assert first.metrics["de_direction_match"] > 0
    assert first.report_html == first.run_root.parents[1] / "report.html"  # the latest run's page, on top
    page = (first.run_root / "promotion-gate" / "report").read_text()  # this run's own page (a rerun followed)
    assert "Gate: PROMOTE" in page and "<th>candidate</th><th>baseline</th>" in page and "serving v" not in page
    assert f"{first.metrics['de_direction_match']:.4g}" in page
    assert "PROMOTE" in first.gate_decision.read_text()


def test_second_run_report_compares_with_the_serving_version(two_runs):
    _, second = two_runs
    page = second.report_html.read_text()
    assert "Gate: HOLD" in page and "<th>serving v1</th>" in page and "Δ vs serving v1" in page


@pytest.mark.skipif(not HAS_TRITONSERVER, reason="tritonserver (nvidia-pytriton) is not installed")
def test_first_run_ends_with_a_grpc_query(two_runs):
    first, _ = two_runs
    assert first.query.startswith("256 cells predicted by state_st")


def test_run_that_does_not_beat_the_serving_model_publishes_nothing(two_runs):
    first, second = two_runs
    assert second.published_version is None
    assert RepositoryStore(str(first.model_repository)).versions("state_st") == [1]
    assert "not the serving model" in second.gate_decision.read_text()


def test_a_rerun_on_the_same_data_reuses_the_trained_models(two_runs):
    # the bundled data is written once: rewritten files would change the data fingerprint and miss the cache
    _, second = two_runs
    assert not (second.run_root / "train-model").exists() and not (second.run_root / "split-cells").exists()
    assert (second.run_root / "promotion-gate").is_dir()  # the gate and publish always run


def test_batch_inference_pipeline_predicts_with_the_trained_run(two_runs, tmp_path):
    import anndata as ad

    from pipelines.local_run import predict_locally, task_output

    first, _ = two_runs
    model_run = task_output(first.run_root.parent, "train-model", "model")
    data_file = next((first.run_root.parents[1] / "data" / "synth").glob("*.h5ad"))
    ad.read_h5ad(data_file)[:200].copy().write_h5ad(tmp_path / "cells.h5ad")
    predicted = ad.read_h5ad(predict_locally(model_run, tmp_path / "cells.h5ad", tmp_path / "kfp"))
    assert predicted.n_obs == 200
    assert any(key.endswith("_pred") for key in predicted.obsm)


@pytest.mark.skipif(not HAS_TRITONSERVER, reason="tritonserver (nvidia-pytriton) is not installed")
def test_publish_waits_until_triton_serves_the_version(two_runs, tmp_path):
    from state_core.errors import ServingError
    from state_core.pipeline_ops.publishing import wait_until_ready
    from state_core.serve.local_server import start_server, stop_server

    first, _ = two_runs
    server = start_server(first.model_repository, tmp_path)
    try:
        url = f"http://{server.host}:{server.http_port}"
        assert wait_until_ready(url, "state_st", 1, timeout_s=60, poll_s=0.5) < 60
        with pytest.raises(ServingError, match="version 9 of state_st was not ready"):
            wait_until_ready(url, "state_st", 9, timeout_s=1.5, poll_s=0.5)
    finally:
        stop_server(server.pid)
