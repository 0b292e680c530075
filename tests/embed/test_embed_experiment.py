"""The embed stage over an experiment TOML (`state_core.embed.experiment`)."""

from __future__ import annotations

import tomllib

import pytest

from state_core.embed.experiment import EmbedOptions, embed_experiment
from state_core.errors import ConfigError


def test_precomputed_embedding_rewrites_dataset_paths(tmp_path):
    (tmp_path / "data" / "ds").mkdir(parents=True)
    toml = tmp_path / "data" / "exp.toml"
    toml.write_text('[datasets]\nds = "ds"\n\n[training]\nds = "train"\n')
    rewritten = embed_experiment(toml, tmp_path / "out", EmbedOptions(method="precomputed"))
    document = tomllib.loads(rewritten.read_text())
    assert document["datasets"]["ds"] == str((tmp_path / "data" / "ds").resolve())
    assert document["training"] == {"ds": "train"}


def test_unknown_embed_method_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match="precomputed, hvg, se"):
        embed_experiment(tmp_path / "x.toml", tmp_path / "out", EmbedOptions(method="pca"))
