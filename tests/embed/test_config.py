"""The `emb fit` config: strict keys, all problems at once, overrides, relative paths."""

from __future__ import annotations

import pytest

from state_core.embed.config import load_fit_config, parse_fit_config
from state_core.errors import ConfigError

MINIMAL = {"gene_embeddings": "t.safetensors", "output_dir": "run", "datasets": [{"name": "a", "path": "a.h5ad"}]}


def test_minimal_config_gets_defaults():
    cfg = parse_fit_config(dict(MINIMAL), "x")
    assert cfg.data.pad_length == 2048 and cfg.loss.name == "tabular" and cfg.data.input_kind == "raw"


def test_unknown_and_mistyped_keys_are_reported_together_with_suggestions():
    raw = dict(MINIMAL, modle={}, data={"pad_lenght": 3, "batch_size": "many", "input_kind": "counts"})
    with pytest.raises(ConfigError) as err:
        parse_fit_config(raw, "conf.yaml")
    text = str(err.value)
    assert "modle" in text and "did you mean 'model'" in text
    assert "data.pad_lenght" in text and "data.pad_length" in text
    assert "data.batch_size" in text and "counts" in text


def test_missing_required_keys_are_named():
    with pytest.raises(ConfigError, match="gene_embeddings: is required"):
        parse_fit_config({"output_dir": "x", "datasets": [{"name": "a", "path": "a"}]}, "conf.yaml")


def test_yaml_and_toml_with_overrides_and_relative_paths(tmp_path):
    (tmp_path / "c.toml").write_text(
        'gene_embeddings = "t.safetensors"\noutput_dir = "run"\n[[datasets]]\nname = "a"\npath = "a.h5ad"\n'
    )
    cfg = load_fit_config(tmp_path / "c.toml", ["trainer.max_steps=7", "model.nlayers=2"])
    assert cfg.trainer.max_steps == 7 and cfg.model.nlayers == 2
    assert cfg.datasets[0].path == str(tmp_path / "a.h5ad")
    (tmp_path / "c.yaml").write_text("gene_embeddings: t.safetensors\noutput_dir: run\ndatasets: []\n")
    with pytest.raises(ConfigError, match="datasets: is empty"):
        load_fit_config(tmp_path / "c.yaml")
