"""Export a training run folder: `model.onnx` + `metadata.json` in one output folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.export.onnx_export import GraphInputs, OnnxExport, export_onnx
from state_core.export.parity import DEFAULT_PARITY_SHAPES
from state_core.runs.load import load_run

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class ExportedModel:
    """An exported model folder: the graph and its metadata."""

    folder: Path
    onnx: OnnxExport
    metadata: ModelMetadata

    @property
    def onnx_path(self) -> Path:
        return self.folder / ONNX_FILE

    @property
    def metadata_path(self) -> Path:
        return self.folder / METADATA_FILE


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "final",
    with_mask: bool = True,
    parity_shapes: tuple[tuple[int, int], ...] = DEFAULT_PARITY_SHAPES,
    tolerance: float = 1e-5,
) -> ExportedModel:
    """Load a run with `state_core.runs.load.load_run` and export it to `out_dir/{model.onnx, metadata.json}`."""
    run = load_run(run_dir, checkpoint=checkpoint)
    vocab, model_config = run.vocab, run.model_config
    batches = tuple(vocab.batches)
    uses_batches = model_config.n_batches is not None
    inputs = GraphInputs(
        input_dim=model_config.input_dim,
        num_perturbations=model_config.n_perturbations,
        num_batches=len(batches) if uses_batches else None,
        with_mask=with_mask,
    )
    out_dir = Path(out_dir)
    onnx_export = export_onnx(run.model, out_dir / ONNX_FILE, inputs, parity_shapes=parity_shapes, tolerance=tolerance)
    # cell_set_len: the set length served configs warm the graph up at
    extra = {
        "run_dir": str(Path(run_dir).resolve()),
        "checkpoint": checkpoint,
        "cell_set_len": str(model_config.cell_set_len),
    }
    metadata = ModelMetadata(
        model_kind=run.model_kind,
        run_id=run.run_id,
        signature=onnx_export.signature,
        perturbations=tuple(vocab.perturbations),
        batches=batches if uses_batches else (),
        gene_names=tuple(vocab.gene_names),
        feature_names=tuple(vocab.feature_names),
        control_pert=vocab.control_pert,
        extra=extra,
    )
    metadata.save(out_dir / METADATA_FILE)
    log.info("exported run %s to %s", run_dir, out_dir)
    return ExportedModel(out_dir, onnx_export, metadata)
