"""Triton python-backend model that runs `model.onnx` with ONNX Runtime (copied as `<version>/model.py`).

Used where the native onnxruntime backend is absent (the tritonserver in the nvidia-pytriton wheel).
It must stay self-contained: Triton's stub imports it with only numpy, onnxruntime and
`triton_python_backend_utils` at hand. Tensors cross the stub boundary through DLPack, because the
stub's `as_numpy()` / `Tensor(name, array)` read numpy-1 dtype structs and corrupt data under numpy 2;
under numpy 1 (the NGC image's Python) it is the other way round: DLPack capsules crash the stub, and
the stub's own bridge is right. `to_numpy` / `to_tensor` pick by the numpy version. Requests with the
same non-batch shapes are concatenated and run once; a bad request gets its own error and never fails the others.
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _ignore_renamed_capsule(previous_hook):
    """Silence numpy's complaint about the DLPack capsule the stub renames after taking it over.

    The stub marks a consumed capsule "used_dlpack"; numpy's capsule destructor only knows
    "used_dltensor", so it reports an unraisable ValueError for every output tensor. The data is
    already owned by Triton at that point, so the message is noise; anything else still goes through.
    """

    def hook(unraisable):
        if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer" in str(unraisable.exc_value):
            return
        previous_hook(unraisable)

    return hook


NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


def to_numpy(tensor):
    """Triton tensor -> numpy: DLPack under numpy 2 (the stub's bridge reads numpy-1 structs); the stub's own
    `as_numpy()` under numpy 1, where it is right (the NGC image's Python)."""
    return np.from_dlpack(tensor) if NUMPY_2 else tensor.as_numpy()


def to_tensor(name, array):
    return pb_utils.Tensor.from_dlpack(name, array) if NUMPY_2 else pb_utils.Tensor(name, array)


class TritonPythonModel:
    def initialize(self, args):
        sys.unraisablehook = _ignore_renamed_capsule(sys.unraisablehook)
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.path.join(folder, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [(i.name, len(i.shape)) for i in self.session.get_inputs()]
        self.input_dims = {i.name: list(i.shape) for i in self.session.get_inputs()}  # ints or names like "set"
        self.outputs = [o.name for o in self.session.get_outputs()]
        with open(os.path.join(folder, "metadata.json")) as f:
            metadata = json.load(f)
        self.index_limits = {"pert_idx": len(metadata["perturbations"]), "batch_idx": len(metadata["batches"])}

    def _read(self, request):
        """Graph inputs of one request, reshaped to the graph's rank ([B, 1] -> [B] for pert_idx)."""
        arrays = {}
        for name, rank in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name!r} is missing")
            array = to_numpy(tensor)
            if array.ndim != rank:
                array = array.reshape(array.shape[0], *([-1] * (rank - 1))) if rank > 1 else array.reshape(-1)
            limit = self.index_limits.get(name)
            if limit and array.size and (array.min() < 0 or array.max() >= limit):
                bad = int(array[(array < 0) | (array >= limit)][0])
                raise ValueError(f"{name} {bad} is out of range: the model knows {limit} (valid 0..{limit - 1})")
            arrays[name] = array
        self._check_shared_dims(arrays)
        return arrays

    def _check_shared_dims(self, arrays):
        """Dims with the same name in the graph (batch, set) must agree across inputs."""
        seen = {}
        for name, array in arrays.items():
            for axis, dim in enumerate(self.input_dims[name]):
                if isinstance(dim, int):
                    continue
                first = seen.setdefault(dim, (name, array.shape[axis]))
                if first[1] != array.shape[axis]:
                    raise ValueError(
                        f"input {name!r} has {dim} size {array.shape[axis]} but {first[0]!r} has {first[1]}; "
                        f"all inputs must describe the same sets"
                    )

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}  # non-batch shapes -> [(request position, inputs)]
        for pos, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except Exception as err:  # noqa: BLE001 - any bad input answers only this request
                error = pb_utils.TritonError(str(err), getattr(pb_utils.TritonError, "INVALID_ARG", 0))
                responses[pos] = pb_utils.InferenceResponse(error=error)
                continue
            key = tuple((n, a.shape[1:]) for n, a in arrays.items())
            groups.setdefault(key, []).append((pos, arrays))
        for members in groups.values():
            self._run_group(members, responses)
        return responses

    def _run_group(self, members, responses):
        feeds = {name: np.concatenate([m[1][name] for m in members]) for name, _ in self.inputs}
        try:
            results = self.session.run(self.outputs, feeds)
        except Exception as err:  # noqa: BLE001
            for pos, _ in members:
                responses[pos] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"model failed: {err}"))
            return
        start = 0
        for pos, arrays in members:
            stop = start + arrays[self.inputs[0][0]].shape[0]
            tensors = [
                to_tensor(name, np.ascontiguousarray(out[start:stop])) for name, out in zip(self.outputs, results)
            ]
            responses[pos] = pb_utils.InferenceResponse(output_tensors=tensors)
            start = stop

    def finalize(self):
        self.session = None
