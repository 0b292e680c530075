"""One local tritonserver per module (each start costs seconds), plus one serving from gs://."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient
from serve_helpers import BATCHES, INPUT_DIM, PERTURBATIONS, infer_raw, requires_triton
from tritonclient.utils import InferenceServerException

from state_core.errors import ServingError, UnknownLabelError
from state_core.serve.client import ClientSettings, TritonSTClient, served_metadata
from state_core.serve.local_server import start_server, stop_server
from state_core.serve.repository import publish_model

pytestmark = requires_triton
MODEL = "state_st"


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    # published for production (onnxruntime, GPU): the launcher serves it through the python-backend view
    publish_model(repo, MODEL, exported.folder, max_batch_size=16)
    running = start_server(repo, tmp_path_factory.mktemp("triton"))
    try:
        yield running
    finally:
        stop_server(running.pid)


@pytest.fixture
def client(server):
    c = TritonSTClient(server.grpc_url, MODEL, ClientSettings(concurrency=3, timeout_s=20))
    c.wait_until_ready(10)
    yield c
    c.close()


def sets(n_sets: int, set_len: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ctrl = rng.standard_normal((n_sets, set_len, INPUT_DIM)).astype(np.float32)  # [B, S, D]
    pert = rng.integers(0, len(PERTURBATIONS), n_sets)  # [B]
    batch = rng.integers(0, len(BATCHES), (n_sets, set_len))  # [B, S]
    mask = np.arange(set_len)[None, :] < rng.integers(1, set_len + 1, n_sets)[:, None]  # [B, S]
    return ctrl, pert, batch, mask


def test_served_predictions_match_torch_and_onnxruntime(client, st_model, exported):
    ctrl, pert, batch, mask = sets(40, 12)  # 40 sets > max_batch_size 16: three chunks in flight at once
    served = client.predict(ctrl, pert, batch, mask)
    with torch.no_grad():
        ref = st_model(torch.from_numpy(ctrl), torch.from_numpy(pert), torch.from_numpy(batch), torch.from_numpy(mask))
    assert np.abs(served["pred_latent"][mask] - ref.latent.numpy()[mask]).max() <= 1e-5
    assert np.abs(served["pred_genes"][mask] - ref.genes.numpy()[mask]).max() <= 1e-5
    session = ort.InferenceSession(str(exported.onnx_path))
    latent, _ = session.run(None, {"ctrl_cell_emb": ctrl, "pert_idx": pert, "batch_idx": batch, "set_mask": mask})
    assert np.abs(served["pred_latent"] - latent).max() <= 1e-5


def test_perturbations_by_name_use_the_served_metadata(client, server):
    metadata = served_metadata(client, server.repository)
    ctrl, _, batch, mask = sets(2, 4)
    by_name = client.predict_named(ctrl, ["GENE_B", "non-targeting"], metadata, batch, mask)
    by_index = client.predict(ctrl, np.array([2, 0]), batch, mask)
    np.testing.assert_array_equal(by_name["pred_latent"], by_index["pred_latent"])
    with pytest.raises(UnknownLabelError, match="GENE_Z"):
        client.predict_named(ctrl, ["GENE_Z", "GENE_A"], metadata, batch, mask)


def _raw_request(server, **overrides):
    ctrl, pert, batch, mask = sets(2, 3)
    arrays = {"ctrl_cell_emb": ctrl, "pert_idx": pert.reshape(2, 1), "batch_idx": batch, "set_mask": mask, **overrides}
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for name, array in arrays.items():
        dtype = {
            np.dtype(np.float32): "FP32",
            np.dtype(np.int64): "INT64",
            np.dtype(bool): "BOOL",
            np.dtype(np.float64): "FP64",
            np.dtype(np.int32): "INT32",
        }[array.dtype]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        return client.infer(MODEL, inputs, client_timeout=20)
    finally:
        client.close()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ctrl_cell_emb": np.zeros((2, 3, INPUT_DIM))}, "data-type"),  # float64 instead of float32
        ({"ctrl_cell_emb": np.zeros((2, 3, INPUT_DIM + 1), np.float32)}, "shape"),  # wrong feature count
        ({"pert_idx": np.array([[1], [99]])}, "pert_idx: set 1 has 99, out of range"),  # unknown perturbation index
        (
            {
                "ctrl_cell_emb": np.zeros((17, 3, INPUT_DIM), np.float32),
                "pert_idx": np.zeros((17, 1), np.int64),
                "batch_idx": np.zeros((17, 3), np.int64),
                "set_mask": np.ones((17, 3), bool),
            },
            "batch-size must be <= 16",
        ),
        ({"set_mask": np.ones((2, 4), bool)}, "set_mask"),  # set dim disagrees with ctrl_cell_emb
    ],
)
def test_malformed_requests_get_a_clear_error_and_the_server_keeps_serving(server, client, overrides, message):
    with pytest.raises(InferenceServerException, match=message):
        _raw_request(server, **overrides)
    ctrl, pert, batch, mask = sets(1, 3)
    assert client.predict(ctrl, pert, batch, mask)["pred_latent"].shape == (1, 3, INPUT_DIM)


def _valid(n_sets: int = 2, set_len: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "ctrl_cell_emb": rng.standard_normal((n_sets, set_len, INPUT_DIM)).astype(np.float32),
        "pert_idx": rng.integers(0, len(PERTURBATIONS), (n_sets, 1)),
        "batch_idx": rng.integers(0, len(BATCHES), (n_sets, set_len)),
        "set_mask": np.arange(set_len)[None, :].repeat(n_sets, 0) < set_len - 1,
    }  # last cell is padding


def _nan_at(set_i: int, cell: int) -> np.ndarray:
    ctrl = _valid()["ctrl_cell_emb"].copy()
    ctrl[set_i, cell, 0] = np.nan
    return ctrl


MALFORMED = {  # name: (overrides of a valid 2-set request, expected message)
    "nan in a real cell": ({"ctrl_cell_emb": _nan_at(1, 0)}, "set 1 has a non-finite value"),
    "nan in padding": ({"ctrl_cell_emb": _nan_at(0, 2)}, "set 0 has a non-finite value .* a padding cell"),
    "empty set": (
        {
            "ctrl_cell_emb": np.zeros((2, 0, INPUT_DIM), np.float32),
            "batch_idx": np.zeros((2, 0), np.int64),
            "set_mask": np.zeros((2, 0), bool),
        },
        "set length 0",
    ),
    "all-masked set": ({"set_mask": np.array([[True, True, False], [False] * 3])}, "set 1 has no real cell"),
    "negative index": ({"pert_idx": np.array([[-1], [0]])}, "pert_idx: set 0 has -1, out of range"),
    "out-of-range index": ({"pert_idx": np.array([[0], [len(PERTURBATIONS)]])}, "pert_idx: set 1 has 5, out of range"),
}


def _send(server, arrays: dict[str, np.ndarray]):
    return infer_raw(server.grpc_url, MODEL, arrays)


def _counts(server, model: str) -> tuple[int, int, int, int]:
    """(successes, failures, inferences, executions) in Triton's statistics of `model`."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    finally:
        client.close()
    infer = stats["inference_stats"]
    return (
        int(infer.get("success", {}).get("count", 0)),
        int(infer.get("fail", {}).get("count", 0)),
        int(stats.get("inference_count", 0)),
        int(stats.get("execution_count", 0)),
    )


def test_malformed_requests_fail_alone_while_concurrent_valid_requests_are_answered(server, exported):
    from concurrent.futures import ThreadPoolExecutor

    session = ort.InferenceSession(str(exported.onnx_path))
    valid = [_valid(seed=i) for i in range(48)]
    expected = [session.run(["pred_latent"], {**v, "pert_idx": v["pert_idx"].ravel()})[0] for v in valid]
    bad = [({**_valid(), **overrides}, message) for overrides, message in MALFORMED.values()] * 2
    before = {m: _counts(server, m) for m in (MODEL, f"{MODEL}_onnx")}
    with ThreadPoolExecutor(max_workers=12) as pool:  # bad and valid requests in flight together
        bad_futures = [pool.submit(_send, server, arrays) for arrays, _ in bad]
        valid_futures = [pool.submit(_send, server, arrays) for arrays in valid]
        for future, (_, message) in zip(bad_futures, bad, strict=True):
            with pytest.raises(InferenceServerException, match=message) as err:
                future.result()
            assert "INVALID_ARGUMENT" in str(err.value.status())
        for future, want in zip(valid_futures, expected, strict=True):
            assert np.abs(future.result() - want).max() <= 1e-5
    after = {m: _counts(server, m) for m in (MODEL, f"{MODEL}_onnx")}
    success, fail = (after[MODEL][i] - before[MODEL][i] for i in (0, 1))
    assert success == len(valid) and fail >= len(bad)  # the failures are in Triton's statistics
    inferences, executions = (after[f"{MODEL}_onnx"][i] - before[f"{MODEL}_onnx"][i] for i in (2, 3))
    assert inferences == 2 * len(valid)  # only checked sets reached the graph
    assert executions < len(valid)  # and the graph did merge requests (co-batched with the rejected ones' peers)


def test_client_reports_rejections_and_unready_models_as_serving_errors(server, client):
    ctrl, pert, batch, mask = sets(1, 3)
    with pytest.raises(ServingError, match="out of range"):
        client.predict(ctrl, np.array([42]), batch, mask)
    missing = TritonSTClient(server.grpc_url, "no_such_model")
    with pytest.raises(ServingError, match="not ready"):
        missing.wait_until_ready(timeout_s=1)


def test_non_loopback_host_is_refused(tmp_path):
    with pytest.raises(ServingError, match="loopback"):
        start_server(tmp_path, tmp_path, host="0.0.0.0")


def test_server_serves_a_gcs_repository(exported, gcs_bucket, st_model, tmp_path):
    repo = f"gs://{gcs_bucket}/triton"
    publish_model(repo, MODEL, exported.folder, backend="python")
    running = start_server(repo, tmp_path)
    try:
        client = TritonSTClient(running.grpc_url, MODEL)
        client.wait_until_ready(10)
        ctrl, pert, batch, mask = sets(3, 5)
        served = client.predict(ctrl, pert, batch, mask)["pred_latent"]
        with torch.no_grad():
            ref = st_model(*(torch.from_numpy(a) for a in (ctrl, pert, batch, mask))).latent.numpy()
        assert np.abs(served[mask] - ref[mask]).max() <= 1e-5
        assert served_metadata(client, repo).run_id == "test-run"
        client.close()
    finally:
        stop_server(running.pid)


def test_publishing_a_new_version_switches_a_polling_server_without_failed_requests(exported, st_model, tmp_path):
    import copy
    import threading

    from state_core.export import GraphInputs, export_onnx

    repo = tmp_path / "repo"
    publish_model(repo, MODEL, exported.folder, backend="python", keep_last=1)
    retrained = copy.deepcopy(st_model)
    with torch.no_grad():
        for param in retrained.parameters():
            param.add_(0.05)  # "retrained": different weights, same graph
    second = tmp_path / "second"
    export_onnx(
        retrained,
        second / "model.onnx",
        GraphInputs(INPUT_DIM, len(PERTURBATIONS), len(BATCHES)),
        parity_shapes=((3, 5),),
    )
    (second / "metadata.json").write_bytes((exported.folder / "metadata.json").read_bytes())

    running = start_server(repo, tmp_path / "triton", poll_repository_s=1)
    client = TritonSTClient(running.grpc_url, MODEL, ClientSettings(retries=0))
    client.wait_until_ready(10)
    ctrl, pert, batch, mask = sets(2, 4)
    failures: list[Exception] = []
    stop = threading.Event()

    def traffic() -> None:
        c = TritonSTClient(running.grpc_url, MODEL, ClientSettings(retries=0))
        while not stop.is_set():
            try:
                c.predict(ctrl, pert, batch, mask)
            except Exception as err:  # noqa: BLE001 - counted, asserted below
                failures.append(err)
        c.close()

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        publish_model(repo, MODEL, second, backend="python", keep_last=1)
        deadline = time.monotonic() + 30
        while client.served_version() != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # keep traffic flowing just after the switch
        assert client.served_version() == "2"
        with torch.no_grad():
            expected = retrained(*(torch.from_numpy(a) for a in (ctrl, pert, batch, mask))).latent.numpy()
        served = client.predict(ctrl, pert, batch, mask)["pred_latent"]
        assert np.abs(served[mask] - expected[mask]).max() <= 1e-5
    finally:
        stop.set()
        sender.join()
        client.close()
        stop_server(running.pid)
    assert failures == []
    # keep_last=1, yet version 1 stays until the next publish: the server was serving it during the switch
    assert sorted(p.name for p in (repo / MODEL).iterdir()) == ["1", "2", "config.pbtxt"]
