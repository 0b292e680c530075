"""ONNX export with a parity gate, and the metadata file that travels with the graph."""

from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.export.onnx_export import GraphInputs, OnnxExport, export_onnx
from state_core.export.parity import ParityReport
from state_core.export.run_export import ONNX_FILE, ExportedModel, export_run
from state_core.export.spec import ModelSignature, TensorSpec, signature_of_onnx

__all__ = [
    "METADATA_FILE",
    "ONNX_FILE",
    "ExportedModel",
    "GraphInputs",
    "ModelMetadata",
    "ModelSignature",
    "OnnxExport",
    "ParityReport",
    "TensorSpec",
    "export_onnx",
    "export_run",
    "signature_of_onnx",
]
