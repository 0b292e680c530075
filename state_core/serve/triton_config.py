"""Write Triton's `config.pbtxt` from a typed description of a model's tensors.

Batching choice (documented in docs/serving.md): `max_batch_size > 0`, so Triton owns the leading
batch dim and it is left out of `dims`. No `preferred_batch_size`: Triton's guidance is to leave it
unset unless measured, so the batcher forms the largest batch available (up to `max_batch_size`)
instead of stopping at the preferred sizes. `model_warmup` runs batch 1 and `max_batch_size` at each
of `warmup_set_lengths` at load, so the first real requests do not pay ONNX Runtime's per-shape setup.
A tensor whose only dim is the batch (`pert_idx [B]`) is declared `dims: [1]` with
`reshape: { shape: [] }`: clients send [B, 1] and the model sees [B].

The production config runs the ONNX file on the `onnxruntime` backend on GPUs; the local one runs
the same file through a python-backend wrapper. Both are rendered from the same tensor specs, so
their input/output sections are identical by construction (and tests check it on the parsed files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state_core.atomic import atomic_write_text
from state_core.export.spec import ModelSignature, TensorSpec
from state_core.extras import require

CONFIG_FILE = "config.pbtxt"
BACKENDS = ("onnxruntime", "python")
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU")


@dataclass(frozen=True)
class TritonModelConfig:
    """Everything `config.pbtxt` says about one model."""

    name: str
    signature: ModelSignature
    backend: str = "onnxruntime"
    max_batch_size: int = 64
    instance_kind: str = "KIND_GPU"
    instance_count: int = 1
    preferred_batch_sizes: tuple[int, ...] = ()  # empty: unset (Triton's advice unless measured)
    max_queue_delay_us: int = 1000
    served_versions: tuple[int, ...] = ()  # empty: the newest version only
    parameters: dict[str, str] = field(default_factory=dict)
    warmup_set_lengths: tuple[int, ...] = ()  # set lengths the graph is warmed up at; empty: no warmup

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ValueError(f"instance_kind {self.instance_kind!r} is not one of {INSTANCE_KINDS}")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1: the exported graphs have a dynamic batch dim")

    def triton_dims(self, spec: TensorSpec) -> tuple[list[int], list[int] | None]:
        return triton_dims(spec)


def triton_dims(spec: TensorSpec) -> tuple[list[int], list[int] | None]:
    """(dims without the batch dim, reshape target or None); dynamic dims become -1."""
    dims = [d if isinstance(d, int) else -1 for d in spec.shape[1:]]
    if not dims:
        return [1], []  # [B] tensor: clients send [B, 1]; the model sees [B]
    return dims, None


def production_config(name: str, signature: ModelSignature, **overrides) -> TritonModelConfig:
    """`onnxruntime_onnx` on GPU instances with dynamic batching: what the NGC image serves.

    Two instances on the GPU, so one batch's host/device copies overlap the other's compute.
    """
    overrides.setdefault("instance_count", 2)
    return TritonModelConfig(
        name=name, signature=signature, backend="onnxruntime", instance_kind="KIND_GPU", **overrides
    )


def local_config(name: str, signature: ModelSignature, **overrides) -> TritonModelConfig:
    """The python-backend wrapper on CPU instances: what the tritonserver in the nvidia-pytriton wheel can run."""
    overrides.setdefault("instance_count", 2)
    return TritonModelConfig(name=name, signature=signature, backend="python", instance_kind="KIND_CPU", **overrides)


def config_for_backend(
    name: str, signature: ModelSignature, backend: str = "onnxruntime", **overrides
) -> TritonModelConfig:
    """`production_config` for the onnxruntime backend, `local_config` for the python one."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    make = production_config if backend == "onnxruntime" else local_config
    return make(name, signature, **overrides)


def write_config(folder: str | Path, config: TritonModelConfig) -> Path:
    """Write `<folder>/config.pbtxt` for `config` (atomically); returns its path."""
    path = Path(folder) / CONFIG_FILE
    atomic_write_text(path, render_config(config))
    return path


def parse_config(text: str, where: str) -> Any:
    """`config.pbtxt` text as Triton's `ModelConfig` protobuf (the one reader of these files); a file that
    does not parse is a ValueError naming `where`."""
    from google.protobuf import text_format

    model_config_pb2 = require("tritonclient.grpc.model_config_pb2", "serve", "reading a Triton config.pbtxt")
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as err:
        raise ValueError(f"{where}: not a valid Triton config ({err})") from None


def _list(values: list[int] | tuple[int, ...]) -> str:
    return "[ " + ", ".join(map(str, values)) + " ]" if values else "[ ]"


def triton_type(dtype: str) -> str:
    """Config data type of a client dtype name (BYTES is TYPE_STRING in config.pbtxt)."""
    return "TYPE_STRING" if dtype == "BYTES" else f"TYPE_{dtype}"


def tensor_block(spec: TensorSpec, name: str | None = None, optional: bool = False, reshape_ok: bool = True) -> str:
    """One entry of an `input [...]` / `output [...]` list (`name` overrides the spec's name).

    `reshape_ok=False` leaves out the [B, 1] -> [B] reshape: ensemble tensors are matched on the
    declared dims, so only the graph itself declares it."""
    dims, reshape = triton_dims(spec)
    reshape = reshape if reshape_ok else None
    text = f'    name: "{name or spec.name}"\n    data_type: {triton_type(spec.dtype)}\n    dims: {_list(dims)}'
    if reshape is not None:
        text += f"\n    reshape: {{ shape: {_list(reshape)} }}"
    if optional:
        text += "\n    optional: true"
    return "  {\n" + text + "\n  }"


def version_policy(served_versions: tuple[int, ...]) -> str:
    if served_versions:
        return f"version_policy: {{ specific: {{ versions: {_list(served_versions)} }} }}"
    return "version_policy: { latest: { num_versions: 1 } }"


def dynamic_batching(preferred: tuple[int, ...] | list[int], max_queue_delay_us: int) -> str:
    lines = [f"  preferred_batch_size: {_list(preferred)}"] if preferred else []
    lines.append(f"  max_queue_delay_microseconds: {max_queue_delay_us}")
    return "dynamic_batching {\n" + "\n".join(lines) + "\n}"


def warmup_block(config: TritonModelConfig) -> str | None:
    """`model_warmup` with zero inputs (index 0, mask False: always in range) at batch 1 and max."""
    if not config.warmup_set_lengths:
        return None
    samples = []
    for set_len in config.warmup_set_lengths:
        for batch in sorted({1, config.max_batch_size}):
            inputs = []
            for spec in config.signature.inputs:
                dims = [set_len if d == -1 else d for d in triton_dims(spec)[0]]
                inputs.append(
                    f'    inputs {{ key: "{spec.name}" value: {{ data_type: {triton_type(spec.dtype)} '
                    f"dims: {_list(dims)} zero_data: true }} }}"
                )
            samples.append(
                f'  {{\n    name: "batch{batch}_set{set_len}"\n    batch_size: {batch}\n' + "\n".join(inputs) + "\n  }"
            )
    return "model_warmup [\n" + ",\n".join(samples) + "\n]"


def render_config(config: TritonModelConfig) -> str:
    """The text of `config.pbtxt`."""
    if config.backend == "onnxruntime":
        head = f'name: "{config.name}"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
    else:
        head = f'name: "{config.name}"\nbackend: "python"'
    lines = [head, f"max_batch_size: {config.max_batch_size}"]
    lines.append("input [\n" + ",\n".join(tensor_block(t) for t in config.signature.inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(tensor_block(t) for t in config.signature.outputs) + "\n]")
    preferred = [b for b in config.preferred_batch_sizes if b <= config.max_batch_size]
    lines.append(dynamic_batching(preferred, config.max_queue_delay_us))
    lines.append(instance_group(config.instance_count, config.instance_kind))
    lines.append(version_policy(config.served_versions))
    lines += parameter_lines(config.parameters)
    warmup = warmup_block(config)
    if warmup:
        lines.append(warmup)
    return "\n".join(lines) + "\n"


def instance_group(count: int, kind: str) -> str:
    gpus = "\n    gpus: [ 0 ]" if kind == "KIND_GPU" else ""
    return f"instance_group [\n  {{\n    count: {count}\n    kind: {kind}{gpus}\n  }}\n]"


def parameter_lines(parameters: dict[str, str]) -> list[str]:
    return [f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in sorted(parameters.items())]
