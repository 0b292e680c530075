"""Export an ST-style model (`forward(ctrl, pert_idx, batch_idx, mask)`) to ONNX with the dynamo exporter.

The graph contract (see docs/serving.md):
  inputs   ctrl_cell_emb [B, S, D_in] float32, pert_idx [B] int64 (row of the perturbation table that
           the model holds as a buffer, so it is inside the graph), optional batch_idx [B, S] int64,
           optional set_mask [B, S] bool (True = real cell)
  outputs  pred_latent [B, S, D_out] float32, optional pred_genes [B, S, G] float32
B and S are dynamic. The file is only written when ONNX Runtime matches PyTorch at other shapes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from state_core.atomic import atomic_path
from state_core.errors import ArtifactError
from state_core.export.parity import DEFAULT_PARITY_SHAPES, ParityReport, check_parity
from state_core.export.runtime_compat import EXPORT_OPSET, check_serving_runtime
from state_core.export.spec import ModelSignature, signature_of_onnx

log = logging.getLogger(__name__)
T = TypeVar("T")

EXAMPLE_SHAPE = (2, 8)  # (batch, set); sizes 0/1 would be specialised by torch.export


@dataclass(frozen=True)
class GraphInputs:
    """What the exported graph takes: feature size, table sizes and which optional inputs exist."""

    input_dim: int
    num_perturbations: int
    num_batches: int | None = None  # None: the model has no batch embedding, so no batch_idx input
    with_mask: bool = True  # add the set_mask (key-padding) input


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    signature: ModelSignature
    parity: ParityReport


class _GraphCore(nn.Module):
    """Calls the model and returns its outputs as a tuple (ONNX outputs cannot be None)."""

    def __init__(self, model: nn.Module, with_genes: bool):
        super().__init__()
        self.model = model
        self.with_genes = with_genes

    def run(
        self, ctrl: torch.Tensor, pert_idx: torch.Tensor, batch_idx: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(ctrl, pert_idx, batch_idx, mask)
        return (out.latent, out.genes) if self.with_genes else (out.latent,)


# One small class per input combination: the exporter names graph inputs after forward's parameters.
class _Plain(_GraphCore):
    def forward(self, ctrl_cell_emb, pert_idx):
        return self.run(ctrl_cell_emb, pert_idx, None, None)


class _Masked(_GraphCore):
    def forward(self, ctrl_cell_emb, pert_idx, set_mask):
        return self.run(ctrl_cell_emb, pert_idx, None, set_mask)


class _Batched(_GraphCore):
    def forward(self, ctrl_cell_emb, pert_idx, batch_idx):
        return self.run(ctrl_cell_emb, pert_idx, batch_idx, None)


class _BatchedMasked(_GraphCore):
    def forward(self, ctrl_cell_emb, pert_idx, batch_idx, set_mask):
        return self.run(ctrl_cell_emb, pert_idx, batch_idx, set_mask)


def graph_module(model: nn.Module, inputs: GraphInputs) -> _GraphCore:
    """Wrap `model` so its forward takes exactly the graph inputs and returns the graph outputs."""
    model = model.eval()
    probe = torch.zeros(1, 2, inputs.input_dim)  # [1, 2, D]
    probe_batch = None if inputs.num_batches is None else torch.zeros(1, 2, dtype=torch.long)  # [1, 2]
    try:
        with torch.no_grad():
            out = model(probe, torch.zeros(1, dtype=torch.long), probe_batch, None)
    except (ValueError, RuntimeError, IndexError) as err:
        # e.g. the context_mean baseline needs cell_type_idx, which is not part of the graph contract
        raise ArtifactError(
            f"{type(model).__name__} cannot be exported with the ONNX contract "
            f"(ctrl_cell_emb, pert_idx, batch_idx, set_mask): {err}"
        ) from None
    with_genes = getattr(out, "genes", None) is not None
    cls = {(False, False): _Plain, (False, True): _Masked, (True, False): _Batched, (True, True): _BatchedMasked}[
        (inputs.num_batches is not None, inputs.with_mask)
    ]
    return cls(model, with_genes).eval()


def _example_args(inputs: GraphInputs) -> tuple[tuple[torch.Tensor, ...], tuple[dict, ...]]:
    b, s = EXAMPLE_SHAPE
    batch, set_len = torch.export.Dim("batch", min=1, max=65536), torch.export.Dim("set", min=1, max=65536)
    args: list[torch.Tensor] = [torch.randn(b, s, inputs.input_dim), torch.arange(b) % inputs.num_perturbations]
    shapes: list[dict] = [{0: batch, 1: set_len}, {0: batch}]
    if inputs.num_batches is not None:
        args.append(torch.zeros(b, s, dtype=torch.long))
        shapes.append({0: batch, 1: set_len})
    if inputs.with_mask:
        args.append(torch.ones(b, s, dtype=torch.bool))
        shapes.append({0: batch, 1: set_len})
    return tuple(args), tuple(shapes)


def export_gated(
    module: nn.Module,
    args: tuple,
    dynamic_shapes: tuple,
    out_path: Path,
    gate: Callable[[Path], T],
    *,
    output_names: list[str],
    input_names: list[str] | None = None,
    opset: int | None = None,
    what: str = "ONNX",
) -> T:
    """Dynamo-export `module` to a temp file, run `gate(tmp)` (the parity check, which raises ArtifactError on
    failure) and move the file to `out_path` only if it passes; returns what the gate returned.

    The opset defaults to `EXPORT_OPSET`, and a file the serving image's ONNX Runtime could not load
    (newer opset or IR version, see `runtime_compat`) is refused like a failed parity gate."""
    try:
        with atomic_path(out_path, suffix=".tmp") as tmp:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter warns about things that do not concern the user
                program = torch.onnx.export(
                    module,
                    args,
                    dynamo=True,
                    dynamic_shapes=dynamic_shapes,
                    input_names=input_names,
                    output_names=output_names,
                    opset_version=opset or EXPORT_OPSET,
                    verbose=False,
                )
            if program is None:
                raise ArtifactError("torch.onnx.export returned no program")
            program.save(str(tmp))
            check_serving_runtime(tmp)
            return gate(tmp)
    except ArtifactError:
        raise
    except Exception as err:
        raise ArtifactError(f"{what} export to {out_path} failed: {type(err).__name__}: {err}") from err


def export_onnx(
    model: nn.Module,
    out_path: str | Path,
    inputs: GraphInputs,
    *,
    parity_shapes: tuple[tuple[int, int], ...] = DEFAULT_PARITY_SHAPES,
    tolerance: float = 1e-5,
    opset: int | None = None,
) -> OnnxExport:
    """Export `model` to `out_path` (ONNX, weights inline) if ONNX Runtime matches PyTorch within `tolerance`.

    The comparison runs at `parity_shapes` (batch, set), which should differ from the (2, 8) example. On
    failure `ArtifactError` is raised and nothing is left at `out_path`.
    """
    out_path = Path(out_path)
    if any(shape == EXAMPLE_SHAPE for shape in parity_shapes) or not parity_shapes:
        raise ValueError(f"parity_shapes must be non-empty and differ from the export example {EXAMPLE_SHAPE}")
    module = graph_module(model, inputs)
    args, dynamic_shapes = _example_args(inputs)
    output_names = ["pred_latent", "pred_genes"] if module.with_genes else ["pred_latent"]

    def gate(tmp: Path) -> tuple[ModelSignature, ParityReport]:
        signature = signature_of_onnx(tmp)
        return signature, check_parity(
            module,
            tmp,
            signature,
            input_dim=inputs.input_dim,
            num_perturbations=inputs.num_perturbations,
            num_batches=inputs.num_batches,
            shapes=parity_shapes,
            tolerance=tolerance,
        )

    signature, report = export_gated(
        module, args, dynamic_shapes, out_path, gate, output_names=output_names, opset=opset, what="ONNX"
    )
    log.info("exported %s\n%s", out_path, report.summary())
    return OnnxExport(out_path, signature, report)
