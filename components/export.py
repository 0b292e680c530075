"""Export stage: run folder -> ONNX graph + metadata, checked for parity with PyTorch."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def export_onnx(model: Input[Model], data_fingerprint: str, onnx_model: Output[Model]):
    """Export the final checkpoint to `model.onnx`; fails if ONNX Runtime disagrees with PyTorch."""
    from state_core.export.run_export import export_run

    export_run(model.path, onnx_model.path)
    onnx_model.metadata["format"] = "onnx"
    onnx_model.metadata["data_fingerprint"] = data_fingerprint
