"""Fingerprint stage: the identity of the experiment's data, computed once at the start of a run."""

from kfp import dsl

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def fingerprint_data(experiment_toml: str) -> str:
    """sha256 of the TOML and the size/time/generation identity of every data file it names."""
    from state_core.pipeline_ops.fingerprint import experiment_fingerprint

    return experiment_fingerprint(experiment_toml)
