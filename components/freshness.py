"""Freshness check for scheduled retraining: has the data changed since the serving model was trained?"""

from kfp import dsl

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def data_changed(data_fingerprint: str, model_repository: str, model_name: str, force: bool) -> bool:
    """True when forced, or when the serving model's record carries another data fingerprint."""
    from state_core.pipeline_ops.fingerprint import differs_from_serving

    return force or differs_from_serving(data_fingerprint, model_repository, model_name)
