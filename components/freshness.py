"""Freshness check for scheduled retraining: has the data changed since the serving model was trained?"""

from kfp import dsl

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def data_changed(
    experiment_toml: str, model_repository: str, model_name: str, force: bool
) -> bool:
    """True when forced, or when the experiment's files differ from those the serving model was trained on."""
    from state_core.pipeline_ops.fingerprint import data_changed_since_serving

    return force or data_changed_since_serving(
        experiment_toml, model_repository, model_name
    )
