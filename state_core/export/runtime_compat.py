"""What the serving image's ONNX Runtime can load, and the opset / IR version every export is pinned to.

The production server is the Triton image `images/serve.Dockerfile` pins; its onnxruntime backend links
one ONNX Runtime release, and a graph with a newer opset or IR version than that release knows fails to
load there even though the (newer) ONNX Runtime in our venv runs it. So exports ask torch for a fixed
opset and are refused when the file exceeds what the serving runtime supports; a test loads an exported
model with exactly that ONNX Runtime version in its own venv (tests/export/test_runtime_compat.py).

Mapping (Triton release -> ONNX Runtime -> highest ONNX opset / IR version it loads), from NVIDIA's
framework support matrix and ONNX Runtime's compatibility table; update both rows together:

    Triton 24.10 (2.51.0)  ONNX Runtime 1.19.2  opset <= 21  IR <= 10   <- serve.Dockerfile, the pytriton server
    Triton 24.12 (2.53.0)  ONNX Runtime 1.20.1  opset <= 22  IR <= 10
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import onnx

from state_core.errors import ArtifactError


@dataclass(frozen=True)
class ServingRuntime:
    triton_release: str
    onnxruntime: str  # the version the image's onnxruntime backend links
    max_opset: int  # highest default-domain (ai.onnx) opset it loads
    max_ir_version: int


SERVING_RUNTIME = ServingRuntime(triton_release="24.10 (2.51.0)", onnxruntime="1.19.2", max_opset=21, max_ir_version=10)
EXPORT_OPSET = 20  # asked of torch.onnx.export; <= SERVING_RUNTIME.max_opset, and what torch 2.13 writes by default


def graph_versions(path: str | Path) -> tuple[int, int]:
    """(default-domain opset, IR version) of an ONNX file (weights are not loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return opset, int(model.ir_version)


def check_serving_runtime(path: str | Path, runtime: ServingRuntime = SERVING_RUNTIME) -> tuple[int, int]:
    """Raise `ArtifactError` when the serving image's ONNX Runtime could not load `path`; returns its versions."""
    opset, ir_version = graph_versions(path)
    if opset > runtime.max_opset or ir_version > runtime.max_ir_version:
        raise ArtifactError(
            f"{Path(path).name}: opset {opset} / IR version {ir_version}, but the serving image (Triton "
            f"{runtime.triton_release}, ONNX Runtime {runtime.onnxruntime}) loads at most opset {runtime.max_opset} / "
            f"IR {runtime.max_ir_version}; fix: export with opset <= {runtime.max_opset} and an onnx/torch that writes "
            f"IR <= {runtime.max_ir_version}, or move the serving image and state_core.export.runtime_compat together"
        )
    return opset, ir_version


def serving_runtime_venv(runtime: ServingRuntime = SERVING_RUNTIME) -> Path:
    """bin/ of a venv of this interpreter with exactly the serving image's ONNX Runtime and numpy 1.x (as the
    NGC image's python backend has), created once under ~/.cache/state-core/venvs; for checks, not serving."""
    root = Path(os.environ.get("STATE_CORE_CACHE", Path.home() / ".cache" / "state-core")) / "venvs"
    venv = root / f"onnxruntime-{runtime.onnxruntime}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"onnxruntime=={runtime.onnxruntime}", "numpy<2"],
            check=True,
            timeout=900,
        )
        (venv / ".installed").write_text(runtime.onnxruntime)
    return python.parent
