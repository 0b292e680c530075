"""Batch inference: AnnData in, predicted expression out (in process, or through a Triton server)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def predict_cells(
    model: Input[Model],
    adata_uri: str,
    triton_url: str,
    pert_col: str,
    cell_type_key: str,
    control_pert: str,
    embed_key: str,
    triton_model_name: str,
    predictions: Output[Dataset],
):
    """Predict every (cell type, perturbation) group of `adata_uri`; `triton_url` empty = run in process."""
    from state_core.storage import localize
    from state_core.train.infer import InferOptions, infer_file

    # Empty strings mean "as the model was trained", which is how InferOptions spells None.
    options = InferOptions(
        pert_col=pert_col or None,
        celltype_col=cell_type_key or None,
        control_pert=control_pert or None,
        embed_key=embed_key or None,
    )
    infer_file(
        model.path,
        localize(adata_uri),
        predictions.path,
        options=options,
        triton_url=triton_url or None,
        model_name=triton_model_name,
    )
