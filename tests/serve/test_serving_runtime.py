"""The guarded layout served with the serving image's Python packages: ONNX Runtime 1.19.2 and numpy 1.x.

The python-backend stubs run in a venv holding exactly those (`serving_runtime_venv`), which is also
where perturbation names (BYTES) can be read: under numpy 2 the stub crashes on BYTES tensors.
"""

from __future__ import annotations

import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from serve_helpers import BATCHES, INPUT_DIM, PERTURBATIONS, infer_raw, requires_triton
from tritonclient.utils import InferenceServerException

from state_core.export.runtime_compat import SERVING_RUNTIME, serving_runtime_venv
from state_core.serve.local_server import start_server, stop_server
from state_core.serve.repository import publish_model

pytestmark = [requires_triton, pytest.mark.slow]
MODEL = "state_st"


def test_names_and_indices_are_served_with_the_serving_images_onnxruntime(exported, tmp_path):
    python_bin = serving_runtime_venv()
    version = subprocess.run(
        [
            str(python_bin / "python"),
            "-c",
            "import onnxruntime, numpy; print(onnxruntime.__version__, numpy.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    ort_version, numpy_version = version.stdout.split()
    assert ort_version == SERVING_RUNTIME.onnxruntime and numpy_version.startswith("1.")
    publish_model(tmp_path / "repo", MODEL, exported.folder, max_batch_size=8, names_input=True)
    server = start_server(tmp_path / "repo", tmp_path / "triton", python_bin=python_bin)
    try:
        rng = np.random.default_rng(1)
        base = {
            "ctrl_cell_emb": rng.standard_normal((2, 5, INPUT_DIM)).astype(np.float32),
            "batch_idx": rng.integers(0, len(BATCHES), (2, 5)),
            "set_mask": np.ones((2, 5), bool),
        }
        by_index = infer_raw(server.grpc_url, MODEL, {**base, "pert_idx": np.array([[2], [0]])})
        names = np.array([[PERTURBATIONS[2].encode()], [PERTURBATIONS[0].encode()]], dtype=object)
        by_name = infer_raw(server.grpc_url, MODEL, {**base, "pert_name": names})
        np.testing.assert_array_equal(by_name, by_index)
        want = ort.InferenceSession(str(exported.onnx_path)).run(
            ["pred_latent"], {**base, "pert_idx": np.array([2, 0])}
        )[0]
        assert np.abs(by_index - want).max() <= 1e-5
        with pytest.raises(InferenceServerException, match="pert_name: set 1 is 'GENE_Z'") as err:
            infer_raw(server.grpc_url, MODEL, {**base, "pert_name": np.array([[b"GENE_A"], [b"GENE_Z"]], dtype=object)})
        assert "INVALID_ARGUMENT" in str(err.value.status())
    finally:
        stop_server(server.pid)
