"""Typed description of a model's input and output tensors, shared by the ONNX export and Triton.

A `TensorSpec` names a tensor, its element type and its shape, where a string dimension is dynamic
(`"batch"`, `"set"`) and an int is fixed. The Triton config writer only needs these specs, so any
exported model (ST, SE, baselines) can be served without model-specific code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from state_core.errors import ArtifactError

Dim = int | str

# Triton's data type names (without the TYPE_ prefix) <-> numpy and ONNX element types.
NUMPY_OF_DTYPE: dict[str, type] = {
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "INT32": np.int32,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}  # BYTES: strings (Triton TYPE_STRING)
_DTYPE_OF_ONNX: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.BOOL: "BOOL",
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: `name`, Triton dtype (`FP32`, `INT64`, `BOOL`, ...) and shape."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        if self.dtype not in NUMPY_OF_DTYPE:
            raise ValueError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {sorted(NUMPY_OF_DTYPE)}")

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(NUMPY_OF_DTYPE[self.dtype])

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict) -> TensorSpec:
        return cls(name=data["name"], dtype=data["dtype"], shape=tuple(data["shape"]))


@dataclass(frozen=True)
class ModelSignature:
    """All inputs and outputs of a model, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def to_json(self) -> dict:
        return {"inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}

    @classmethod
    def from_json(cls, data: dict) -> ModelSignature:
        return cls(
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )


def _spec_of_value_info(value: onnx.ValueInfoProto, where: Path) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dtype = _DTYPE_OF_ONNX.get(tensor_type.elem_type)
    if dtype is None:
        raise ArtifactError(
            f"{where}: tensor {value.name!r} has ONNX element type {tensor_type.elem_type}, which we do not serve"
        )
    dims: list[Dim] = []
    for i, d in enumerate(tensor_type.shape.dim):
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or f"d{i}"))
    return TensorSpec(value.name, dtype, tuple(dims))


def signature_of_onnx(path: str | Path) -> ModelSignature:
    """Read the input/output specs from an ONNX file's graph (weights are not loaded)."""
    path = Path(path)
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as err:  # noqa: BLE001 - onnx raises DecodeError/OSError variants
        raise ArtifactError(f"{path}: not a readable ONNX model ({err})") from None
    initializers = {init.name for init in graph.initializer}
    inputs = tuple(_spec_of_value_info(v, path) for v in graph.input if v.name not in initializers)
    outputs = tuple(_spec_of_value_info(v, path) for v in graph.output)
    return ModelSignature(inputs, outputs)
