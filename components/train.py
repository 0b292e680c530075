"""Train stage: embedded data + split manifest -> an ST (or baseline) run folder."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def train_model(
    embedded: Input[Dataset],
    split: Input[Dataset],
    data_fingerprint: str,
    model_preset: str,
    overrides: list,
    checkpoint_uri: str,
    model: Output[Model],
):
    """Train `model_preset` (state, state_sm, pertsets, context_mean, ...) with `key=value` overrides;
    with `checkpoint_uri`, checkpoints are mirrored there and a retried task resumes from them."""
    from state_core.pipeline_ops.training import train_for_pipeline

    train_for_pipeline(
        embedded_dir=embedded.path,
        split_dir=split.path,
        run_dir=model.path,
        model_preset=model_preset,
        overrides=[str(item) for item in overrides],
        data_fingerprint=data_fingerprint,
        checkpoint_uri=checkpoint_uri,
    )
    model.metadata["preset"] = model_preset
    model.metadata["data_fingerprint"] = data_fingerprint
