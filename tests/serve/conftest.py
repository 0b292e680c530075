"""Shared fixtures: one small exported ST model (the GCS emulator fixture lives in tests/conftest.py)."""

from __future__ import annotations

import logging

import pytest
from serve_helpers import BATCHES, INPUT_DIM, PERTURBATIONS

from state_core.export import ExportedModel, GraphInputs, ModelMetadata, export_onnx
from state_core.models.st import StateTransitionModel, STConfig

for name in ("onnxscript", "onnx_ir"):
    logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def st_model() -> StateTransitionModel:
    config = STConfig(
        input_dim=INPUT_DIM,
        output_dim=INPUT_DIM,
        n_perturbations=len(PERTURBATIONS),
        hidden_dim=16,
        n_layers=2,
        n_heads=2,
        ffn_dim=32,
        gene_dim=10,
        n_batches=len(BATCHES),
        decoder_hidden_dims=(16,),
        dropout=0.0,
    )
    return StateTransitionModel(config).eval()


@pytest.fixture(scope="session")
def exported(st_model, tmp_path_factory) -> ExportedModel:
    """model.onnx + metadata.json as `export_run` writes them."""
    folder = tmp_path_factory.mktemp("exported")
    inputs = GraphInputs(INPUT_DIM, len(PERTURBATIONS), len(BATCHES))
    onnx_export = export_onnx(st_model, folder / "model.onnx", inputs, parity_shapes=((3, 5),))
    metadata = ModelMetadata(
        model_kind="state",
        run_id="test-run",
        signature=onnx_export.signature,
        perturbations=PERTURBATIONS,
        batches=BATCHES,
        gene_names=tuple(f"g{i}" for i in range(10)),
        control_pert="non-targeting",
    )
    metadata.save(folder / "metadata.json")
    return ExportedModel(folder, onnx_export, metadata)
