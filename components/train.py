"""Train stage: embedded data + split manifest -> an ST (or baseline) run folder."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import STATE_IMAGE


@dsl.component(base_image=STATE_IMAGE, install_kfp_package=False)
def train_model(
    embedded: Input[Dataset],
    split: Input[Dataset],
    model_preset: str,
    overrides: list,
    model: Output[Model],
):
    """Train `model_preset` (state, state_sm, pertsets, context_mean, ...) with `key=value` overrides."""
    from pathlib import Path

    from state_core.config.train_config import parse_overrides
    from state_core.train.fit import train_st

    run_dir = Path(model.path)
    # Pipeline-owned keys come last so a user override cannot point the run at other data.
    config = parse_overrides(
        [
            *[str(item) for item in overrides],
            f"model={model_preset}",
            f"data.kwargs.toml_config_path={Path(embedded.path) / 'experiment.toml'}",
            f"data.kwargs.split_dir={split.path}",
            f"output_dir={run_dir.parent}",
            f"name={run_dir.name}",
        ]
    )
    train_st(config)
    model.metadata["preset"] = model_preset
