"""Embed stage: the experiment's datasets -> model input features (HVGs, SE embeddings, or as given)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def embed_cells(
    experiment_toml: str,
    data_fingerprint: str,
    method: str,
    num_hvgs: int,
    se_model_dir: str,
    se_layer: str,
    embedded: Output[Dataset],
):
    """Write embedded h5ad files and `experiment.toml` pointing at them (method: precomputed | hvg | se)."""
    from state_core.embed.experiment import EmbedOptions, embed_experiment
    from state_core.pipeline_ops.fingerprint import require_fingerprint

    require_fingerprint(experiment_toml, data_fingerprint)
    options = EmbedOptions(method=method, num_hvgs=num_hvgs, se_model_dir=se_model_dir, se_layer=se_layer)
    embed_experiment(experiment_toml, embedded.path, options)
    embedded.metadata["data_fingerprint"] = data_fingerprint
