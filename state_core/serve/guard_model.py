"""Triton python-backend step in front of the graph: checks every request, maps perturbation names to indices.

Copied as `<model>_guard/<version>/model.py`. In the ensemble `<model>` it runs before the ONNX graph
(`onnxruntime_onnx` in production, the python-backend wrapper locally), so a malformed request is
answered with its own INVALID_ARG here and never reaches the graph's dynamic batcher, where one bad
request would fail every request merged with it (ONNX Runtime raises for the whole batch) or, worse,
give wrong numbers silently (a negative index wraps around, NaN spreads through attention).

Checks per request, each naming the input and the set: sets have >= 1 cell, inputs agree on the
batch/set sizes, every value of `ctrl_cell_emb` is finite (padding included), no set is all padding,
`pert_idx` / `batch_idx` within the model's tables, `pert_name` known. Exactly one of `pert_idx` (INT64,
our client: no string handling) and `pert_name` (BYTES, friendlier for other clients) is sent.

Self-contained: the stub imports it with only numpy and `triton_python_backend_utils` at hand. Numeric
tensors cross the stub boundary by DLPack (its numpy-1 bridge corrupts them under numpy 2; see
python_backend_model.py); under numpy 1 (the NGC image) the stub's own `as_numpy()` is used, since
DLPack capsules crash there. BYTES tensors have no DLPack form and `as_numpy()` crashes that stub under
numpy 2, so `pert_name` is read only where the stub's numpy is 1.x (the NGC image); elsewhere a request
with `pert_name` gets a clear INVALID_ARG asking for `pert_idx`.
"""

import json
import os

import numpy as np

CHECKED_PREFIX = "checked_"  # guard output = graph input with this prefix


class RequestError(ValueError):
    """A request the graph must not see; the message goes back to the client as INVALID_ARG."""


def _owned(array, dtype):
    """A writable C-contiguous copy: tensors read by DLPack are read-only, and DLPack cannot export those."""
    return np.array(array, dtype=dtype, order="C", copy=True)


def _first(bad):
    """(set, position) of the first True in a [B, ...] boolean array."""
    index = np.argwhere(bad)[0]
    return int(index[0]), (int(index[1]) if index.size > 1 else None)


def check_request(arrays, pert_names, n_batches):
    """Validate one request's tensors (numpy, Triton's [B, 1] pert tensors) and return the graph's inputs.

    `arrays` holds `ctrl_cell_emb` [B, S, D] and any of `pert_idx` [B, 1], `pert_name` [B, 1] (bytes),
    `batch_idx` [B, S], `set_mask` [B, S]. Raises `RequestError` naming the input and the set.
    """
    ctrl = arrays["ctrl_cell_emb"]
    if ctrl.ndim != 3:
        raise RequestError(f"ctrl_cell_emb must be [batch, set, features], got shape {list(ctrl.shape)}")
    n_sets, set_len = ctrl.shape[:2]
    if set_len == 0:
        raise RequestError("ctrl_cell_emb has set length 0: every set needs at least one cell")
    for name in ("batch_idx", "set_mask"):
        if name in arrays and tuple(arrays[name].shape) != (n_sets, set_len):
            raise RequestError(
                f"{name} has shape {list(arrays[name].shape)} but ctrl_cell_emb describes "
                f"{n_sets} sets of {set_len} cells; all inputs must describe the same sets"
            )
    mask = arrays.get("set_mask")
    finite = np.isfinite(ctrl).all(axis=2)  # [B, S]
    if not finite.all():
        i, j = _first(~finite)
        where = "a real cell" if mask is None or mask[i, j] else "a padding cell (set_mask False)"
        raise RequestError(
            f"ctrl_cell_emb: set {i} has a non-finite value (NaN or Inf) in cell {j}, {where}; "
            "send finite numbers everywhere, padding rows included (zeros are fine)"
        )
    if mask is not None and not mask.any(axis=1).all():
        i, _ = _first(~mask.any(axis=1))
        raise RequestError(f"set_mask: set {i} has no real cell (all False); leave empty sets out of the request")
    pert = _pert_indices(arrays, n_sets, pert_names)
    graph = {"ctrl_cell_emb": _owned(ctrl, np.float32), "pert_idx": pert}
    if "batch_idx" in arrays:
        batch = arrays["batch_idx"]
        out = (batch < 0) | (batch >= n_batches)
        if out.any():
            i, j = _first(out)
            raise RequestError(
                f"batch_idx: set {i} cell {j} has {int(batch[i, j])}, out of range "
                f"(the model knows {n_batches} batches: 0..{n_batches - 1})"
            )
        graph["batch_idx"] = _owned(batch, np.int64)
    if mask is not None:
        graph["set_mask"] = _owned(mask, np.bool_)
    return graph


def _pert_indices(arrays, n_sets, pert_names):
    """pert_idx [B, 1] int64 from whichever of pert_idx / pert_name the request carries."""
    given = [name for name in ("pert_idx", "pert_name") if name in arrays]
    if len(given) != 1:
        raise RequestError(
            f"send exactly one of pert_idx (INT64) or pert_name (BYTES), one per set; got {given or 'neither'}"
        )
    values = arrays[given[0]].reshape(-1)
    if values.shape[0] != n_sets:
        raise RequestError(f"{given[0]} has {values.shape[0]} values for {n_sets} sets; send one per set")
    n_perts = len(pert_names)
    if given[0] == "pert_idx":
        out = (values < 0) | (values >= n_perts)
        if out.any():
            i = int(np.argmax(out))
            raise RequestError(
                f"pert_idx: set {i} has {int(values[i])}, out of range "
                f"(the model knows {n_perts} perturbations: 0..{n_perts - 1})"
            )
        return _owned(values.reshape(n_sets, 1), np.int64)
    lookup = {name: i for i, name in enumerate(pert_names)}
    indices = []
    for i, raw in enumerate(values):
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if name not in lookup:
            shown = ", ".join(repr(n) for n in pert_names[:5]) + (" ..." if n_perts > 5 else "")
            raise RequestError(f"pert_name: set {i} is {name!r}, which this model does not know (known: {shown})")
        indices.append(lookup[name])
    return np.asarray(indices, dtype=np.int64).reshape(n_sets, 1)


class TritonPythonModel:
    def initialize(self, args):
        import sys

        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        sys.unraisablehook = _ignore_renamed_capsule(sys.unraisablehook)
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        folder = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(folder, "metadata.json")) as f:
            metadata = json.load(f)
        self.pert_names = list(metadata["perturbations"])
        self.n_batches = len(metadata["batches"])
        self.reads_bytes = int(np.__version__.split(".")[0]) < 2

    def _read(self, request):
        arrays = {}
        for name in self.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            if name != "pert_name":
                arrays[name] = np.from_dlpack(tensor) if not self.reads_bytes else tensor.as_numpy()
            elif self.reads_bytes:
                arrays[name] = tensor.as_numpy()
            else:
                raise RequestError(
                    f"pert_name cannot be read by this server (its python backend runs numpy "
                    f"{np.__version__}, which the stub's BYTES bridge does not support); send pert_idx"
                )
        return arrays

    def execute(self, requests):
        responses = []
        for request in requests:  # each request on its own: one bad request never touches another
            try:
                graph = check_request(self._read(request), self.pert_names, self.n_batches)
            except RequestError as err:
                error = self.pb.TritonError(str(err), self.pb.TritonError.INVALID_ARG)
                responses.append(self.pb.InferenceResponse(error=error))
                continue
            make = self.pb.Tensor if self.reads_bytes else self.pb.Tensor.from_dlpack  # numpy 1: the stub's own bridge
            tensors = [make(name, graph[name[len(CHECKED_PREFIX) :]]) for name in self.outputs]
            responses.append(self.pb.InferenceResponse(output_tensors=tensors))
        return responses


def _ignore_renamed_capsule(previous_hook):
    """Same filter as python_backend_model.py: the stub renames consumed DLPack capsules, numpy complains."""

    def hook(unraisable):
        if isinstance(unraisable.exc_value, ValueError) and "PyCapsule_GetPointer" in str(unraisable.exc_value):
            return
        previous_hook(unraisable)

    return hook
