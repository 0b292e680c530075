"""The served layout of one ST model: an ensemble `<name>` = guard step `<name>_guard` + graph `<name>_onnx`.

    <name>        platform "ensemble": what clients call; inputs = graph inputs + optional `pert_name`
    <name>_guard  python backend (guard_model.py): per-request checks, perturbation names -> indices
    <name>_onnx   the graph: `onnxruntime_onnx` on GPU (production) or the python-backend ORT wrapper (local)

Why an ensemble: Triton schedules each ensemble request through the steps on its own, so a request the
guard rejects ends there with its own INVALID_ARG, and the graph's dynamic batcher only ever merges
checked requests. The ensemble's statistics count a request that failed in any step as a failure
(the python backend alone reports its error responses as successes).
"""

from __future__ import annotations

from dataclasses import dataclass

from state_core.export.spec import ModelSignature, TensorSpec
from state_core.serve.triton_config import (
    TritonModelConfig,
    _list,
    dynamic_batching,
    instance_group,
    local_config,
    production_config,
    render_config,
    tensor_block,
    version_policy,
)

GUARD_SUFFIX, GRAPH_SUFFIX = "_guard", "_onnx"
CHECKED_PREFIX = "checked_"  # must match guard_model.CHECKED_PREFIX
PERT_NAME = TensorSpec("pert_name", "BYTES", ("batch",))


@dataclass(frozen=True)
class ServedLayout:
    """Names of the three model folders that serve `name`; `names_input` adds the optional `pert_name` input.

    `names_input` needs a python backend whose numpy is 1.x (the stub's BYTES bridge crashes under numpy 2,
    killing the guard's stub for every request in flight), so it is off unless asked for.
    """

    name: str
    names_input: bool = False
    guarded: bool = True  # False: a graph without the ST contract (SE encoder) is served alone as `name`

    @classmethod
    def for_signature(cls, name: str, signature: ModelSignature, names_input: bool = False) -> ServedLayout:
        """Guarded when the graph takes ST requests (the guard's checks are about cell sets)."""
        st_inputs = {"ctrl_cell_emb", "pert_idx"} <= {t.name for t in signature.inputs}
        return cls(name, names_input and st_inputs, guarded=st_inputs)

    @property
    def guard(self) -> str:
        return self.name + GUARD_SUFFIX

    @property
    def graph(self) -> str:
        return self.name + GRAPH_SUFFIX if self.guarded else self.name

    @property
    def models(self) -> tuple[str, ...]:
        return (self.name, self.guard, self.graph) if self.guarded else (self.name,)

    @property
    def publish_order(self) -> tuple[str, ...]:
        """Steps first, the ensemble (what clients call) last: its config is the commit point."""
        return (self.guard, self.graph, self.name) if self.guarded else (self.name,)


def graph_config(layout: ServedLayout, signature: ModelSignature, backend: str, **overrides) -> TritonModelConfig:
    make = production_config if backend == "onnxruntime" else local_config
    return make(layout.graph, signature, **overrides)


def _client_inputs(layout: ServedLayout, signature: ModelSignature) -> list[str]:
    """Ensemble/guard inputs: the graph's; with names, pert_idx optional and pert_name added (one of them is sent)."""
    names = layout.names_input
    blocks = [tensor_block(t, optional=names and t.name == "pert_idx", reshape_ok=False) for t in signature.inputs]
    if names:
        blocks.insert(1, tensor_block(PERT_NAME, optional=True, reshape_ok=False))
    return blocks


def render_guard_config(
    layout: ServedLayout,
    signature: ModelSignature,
    *,
    max_batch_size: int,
    served_versions: tuple[int, ...],
    instance_count: int = 2,
) -> str:
    """The guard step: CPU python backend; its outputs are the graph inputs with the `checked_` prefix."""
    lines = [
        f'name: "{layout.guard}"',
        'backend: "python"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_client_inputs(layout, signature)) + "\n]",
        "output [\n"
        + ",\n".join(tensor_block(t, name=CHECKED_PREFIX + t.name, reshape_ok=False) for t in signature.inputs)
        + "\n]",
        # delay 0: take whatever is queued; the guard's work per request is tiny
        dynamic_batching((), 0),
        instance_group(instance_count, "KIND_CPU"),
        version_policy(served_versions),
    ]
    return "\n".join(lines) + "\n"


def _map(pairs: list[tuple[str, str]], kind: str) -> str:
    return "\n".join(f'      {kind} {{ key: "{k}" value: "{v}" }}' for k, v in pairs)


def render_ensemble_config(
    layout: ServedLayout, signature: ModelSignature, *, max_batch_size: int, version: int
) -> str:
    """The ensemble clients call, pinned to `version` of both steps (so one config write switches all)."""
    guard_in = [(t.name, t.name) for t in signature.inputs] + ([(PERT_NAME.name,) * 2] if layout.names_input else [])
    guard_out = [(CHECKED_PREFIX + t.name, CHECKED_PREFIX + t.name) for t in signature.inputs]
    graph_in = [(t.name, CHECKED_PREFIX + t.name) for t in signature.inputs]
    graph_out = [(t.name, t.name) for t in signature.outputs]
    steps = []
    for model, inputs, outputs in ((layout.guard, guard_in, guard_out), (layout.graph, graph_in, graph_out)):
        steps.append(
            f'    {{\n      model_name: "{model}"\n      model_version: {version}\n'
            f"{_map(inputs, 'input_map')}\n{_map(outputs, 'output_map')}\n    }}"
        )
    lines = [
        f'name: "{layout.name}"',
        'platform: "ensemble"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(_client_inputs(layout, signature)) + "\n]",
        "output [\n" + ",\n".join(tensor_block(t) for t in signature.outputs) + "\n]",
        "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}",
        f"version_policy: {{ specific: {{ versions: {_list((version,))} }} }}",
    ]
    return "\n".join(lines) + "\n"


def render_layout(
    layout: ServedLayout,
    signature: ModelSignature,
    graph: TritonModelConfig,
    version: int,
    loaded_versions: tuple[int, ...],
) -> dict[str, str]:
    """config.pbtxt text per model folder. The steps keep `loaded_versions` (the new one and the one
    served before) loaded, so the old ensemble keeps working until the new ensemble config is read."""
    if not layout.guarded:
        return {layout.name: render_config(graph)}
    return {
        layout.guard: render_guard_config(
            layout, signature, max_batch_size=graph.max_batch_size, served_versions=loaded_versions
        ),
        layout.graph: render_config(graph),
        layout.name: render_ensemble_config(layout, signature, max_batch_size=graph.max_batch_size, version=version),
    }
