"""Write Triton's `config.pbtxt` from a typed description of a model's tensors.

Batching choice (documented in docs/serving.md): `max_batch_size > 0`, so Triton owns the leading
batch dim and it is left out of `dims`. A tensor whose only dim is the batch (`pert_idx [B]`) is
declared `dims: [1]` with `reshape: { shape: [] }`: clients send [B, 1] and the model sees [B].

The production config runs the ONNX file on the `onnxruntime` backend on GPUs; the local one runs
the same file through a python-backend wrapper. Both are rendered from the same tensor specs, so
their input/output sections are identical by construction (and tests check it on the parsed files).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state_core.export.spec import ModelSignature, TensorSpec

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
    preferred_batch_sizes: tuple[int, ...] = (8, 16, 32)
    max_queue_delay_us: int = 1000
    served_versions: tuple[int, ...] = ()  # empty: the newest version only
    parameters: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} is not one of {BACKENDS}")
        if self.instance_kind not in INSTANCE_KINDS:
            raise ValueError(f"instance_kind {self.instance_kind!r} is not one of {INSTANCE_KINDS}")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1: the exported graphs have a dynamic batch dim")

    def triton_dims(self, spec: TensorSpec) -> tuple[list[int], list[int] | None]:
        """(dims without the batch dim, reshape target or None); dynamic dims become -1."""
        dims = [d if isinstance(d, int) else -1 for d in spec.shape[1:]]
        if not dims:
            return [1], []  # [B] tensor: clients send [B, 1]; the model sees [B]
        return dims, None


def production_config(name: str, signature: ModelSignature, **overrides) -> TritonModelConfig:
    """`onnxruntime_onnx` on GPU instances with dynamic batching: what the NGC image serves."""
    return TritonModelConfig(name=name, signature=signature, backend="onnxruntime", instance_kind="KIND_GPU", **overrides)


def local_config(name: str, signature: ModelSignature, **overrides) -> TritonModelConfig:
    """The python-backend wrapper on CPU instances: what the tritonserver in the nvidia-pytriton wheel can run."""
    overrides.setdefault("instance_count", 2)
    return TritonModelConfig(name=name, signature=signature, backend="python", instance_kind="KIND_CPU", **overrides)


def _list(values: list[int] | tuple[int, ...]) -> str:
    return "[ " + ", ".join(map(str, values)) + " ]" if values else "[ ]"


def _tensor_block(config: TritonModelConfig, spec: TensorSpec) -> str:
    dims, reshape = config.triton_dims(spec)
    text = f'    name: "{spec.name}"\n    data_type: TYPE_{spec.dtype}\n    dims: {_list(dims)}'
    if reshape is not None:
        text += f"\n    reshape: {{ shape: {_list(reshape)} }}"
    return "  {\n" + text + "\n  }"


def render_config(config: TritonModelConfig) -> str:
    """The text of `config.pbtxt`."""
    if config.backend == "onnxruntime":
        head = f'name: "{config.name}"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "model.onnx"'
    else:
        head = f'name: "{config.name}"\nbackend: "python"'
    lines = [head, f"max_batch_size: {config.max_batch_size}"]
    lines.append("input [\n" + ",\n".join(_tensor_block(config, t) for t in config.signature.inputs) + "\n]")
    lines.append("output [\n" + ",\n".join(_tensor_block(config, t) for t in config.signature.outputs) + "\n]")
    preferred = [b for b in config.preferred_batch_sizes if b <= config.max_batch_size]
    lines.append(
        "dynamic_batching {\n"
        f"  preferred_batch_size: {_list(preferred)}\n"
        f"  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}"
    )
    gpus = "\n    gpus: [ 0 ]" if config.instance_kind == "KIND_GPU" else ""
    lines.append(f"instance_group [\n  {{\n    count: {config.instance_count}\n    kind: {config.instance_kind}{gpus}\n  }}\n]")
    if config.served_versions:
        lines.append(f"version_policy: {{ specific: {{ versions: {_list(config.served_versions)} }} }}")
    else:
        lines.append("version_policy: { latest: { num_versions: 1 } }")
    for key, value in sorted(config.parameters.items()):
        lines.append(f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"
