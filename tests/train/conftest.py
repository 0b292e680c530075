"""Fixtures for training tests: one tiny ST run shared by the module tests."""

from __future__ import annotations

import pytest

from state_core.config.train_config import parse_overrides
from state_core.train.fit import train_st

TINY = [
    "model=state_sm",
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=8",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=1",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
    "model.kwargs.transformer_backbone_kwargs.intermediate_size=64",
    "training.batch_size=2",
    "training.progress_bar=false",
    "training.val_freq=4",
    "training.ckpt_every_n_steps=4",
]


def make_train_cfg(exp, out, name, *extra):
    return parse_overrides(
        [f"data.kwargs.toml_config_path={exp.fewshot_toml}", f"output_dir={out}", f"name={name}", *TINY, *extra]
    )


@pytest.fixture(scope="session")
def trained(synth_experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train_st(make_train_cfg(synth_experiment, out, "st", "training.max_steps=8"))


@pytest.fixture
def train_cfg():
    """The tiny-run config builder: train_cfg(experiment, output_dir, name, *overrides)."""
    return make_train_cfg
