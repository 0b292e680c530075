"""Constants and markers shared by the serving tests (a uniquely named module, unlike conftest)."""

from __future__ import annotations

import os

import numpy as np
import pytest

PERTURBATIONS = ("non-targeting", "GENE_A", "GENE_B", "GENE_C", "GENE_D")
BATCHES = ("gem1", "gem2", "gem3")
INPUT_DIM = 8


def triton_available() -> bool:
    from state_core.errors import ServingError
    from state_core.serve.local_server import find_triton_install

    try:
        find_triton_install()
    except ServingError:
        return False
    return True


# Skipped on a dev machine without the wheel; in CI (CI=true) a missing server is a failure, not a skip.
requires_triton = pytest.mark.skipif(
    not triton_available() and not os.environ.get("CI"),
    reason="tritonserver not installed: pip install --no-deps nvidia-pytriton==0.7.0",
)


_TRITON_DTYPES = {"f": "FP32", "i": "INT64", "b": "BOOL", "O": "BYTES"}  # by numpy dtype kind


def infer_raw(url: str, model: str, arrays: dict[str, np.ndarray], output: str = "pred_latent") -> np.ndarray:
    """One gRPC request with exactly these input tensors (no client-side checks), for malformed-request tests."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), _TRITON_DTYPES[array.dtype.kind])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        return client.infer(model, inputs, client_timeout=30).as_numpy(output)
    finally:
        client.close()
