"""Exports are pinned to what the serving image's ONNX Runtime loads, and that exact version loads them."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from tiny_st import TinyST

from state_core.errors import ArtifactError
from state_core.export import GraphInputs, export_onnx
from state_core.export.parity import random_feeds
from state_core.export.runtime_compat import (
    EXPORT_OPSET,
    SERVING_RUNTIME,
    check_serving_runtime,
    graph_versions,
    serving_runtime_venv,
)


@pytest.fixture(scope="module")
def tiny_export(tmp_module_dir):
    return export_onnx(
        TinyST(), tmp_module_dir / "tiny.onnx", GraphInputs(input_dim=6, num_perturbations=4), parity_shapes=((3, 5),)
    )


def test_export_writes_the_pinned_opset_and_an_ir_version_the_serving_runtime_loads(tiny_export):
    opset, ir_version = graph_versions(tiny_export.path)
    assert opset == EXPORT_OPSET <= SERVING_RUNTIME.max_opset
    assert ir_version <= SERVING_RUNTIME.max_ir_version


def test_a_graph_newer_than_the_serving_runtime_is_refused(tmp_path):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "new.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", SERVING_RUNTIME.max_opset + 1)]), path)
    with pytest.raises(ArtifactError, match=f"ONNX Runtime {SERVING_RUNTIME.onnxruntime}"):
        check_serving_runtime(path)


RUN_IN_OLD_RUNTIME = """
import json, sys, numpy as np, onnxruntime as ort
feeds = dict(np.load(sys.argv[2]))
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(["pred_latent"], feeds)[0])
print(json.dumps({"version": ort.__version__}))
"""


@pytest.mark.slow
def test_the_serving_images_onnxruntime_loads_and_runs_the_export(tiny_export, tmp_path):
    python = serving_runtime_venv() / "python"
    feeds = random_feeds(tiny_export.signature, 3, 7, 6, 4, None, seed=3)
    np.savez(tmp_path / "feeds.npz", **feeds)
    done = subprocess.run(
        [
            str(python),
            "-c",
            RUN_IN_OLD_RUNTIME,
            str(tiny_export.path),
            str(tmp_path / "feeds.npz"),
            str(tmp_path / "out.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["version"] == SERVING_RUNTIME.onnxruntime
    ours = ort.InferenceSession(str(tiny_export.path)).run(["pred_latent"], feeds)[0]
    assert np.abs(np.load(tmp_path / "out.npy") - ours).max() <= 1e-5
