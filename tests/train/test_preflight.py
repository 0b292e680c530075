"""`preflight`: the model config is resolved once, and the loader and the model read that one value."""

from __future__ import annotations

import dataclasses
import math

import anndata as ad
import numpy as np
import pytest

from state_core.config.train_config import parse_overrides
from state_core.data.splits import SplitManifest
from state_core.errors import ConfigError
from state_core.models.presets import PRESETS
from state_core.runs.layout import SPLIT_DIR
from state_core.runs.load import load_run
from state_core.train.infer import InferOptions, infer_file
from state_core.train.preflight import preflight


def test_loader_and_model_share_the_overridden_cell_set_len(synth_experiment, tmp_path, train_cfg):
    plan = preflight(train_cfg(synth_experiment, tmp_path, "p"))  # the tiny config sets cell_set_len=8
    assert plan.model.model.cell_set_len == 8
    assert plan.data.datamodule.cell_set_len == 8


def test_without_an_override_both_use_the_presets_cell_set_len(synth_experiment, tmp_path):
    cfg = parse_overrides(
        [
            f"data.kwargs.toml_config_path={synth_experiment.fewshot_toml}",
            f"output_dir={tmp_path}",
            "name=p",
            "model=pertsets",
            "model.kwargs.hidden_dim=32",
        ]
    )
    plan = preflight(cfg)
    assert plan.model.model.cell_set_len == PRESETS["pertsets"].cell_set_len
    assert plan.data.datamodule.cell_set_len == PRESETS["pertsets"].cell_set_len


def test_a_bad_cell_set_len_is_one_problem_naming_the_key(synth_experiment, tmp_path, train_cfg):
    with pytest.raises(ConfigError, match="cell_set_len: must be >= 1"):
        preflight(train_cfg(synth_experiment, tmp_path, "p", "model.kwargs.cell_set_len=0"))


def test_infer_cuts_sets_at_the_runs_cell_set_len(trained, synth_experiment, tmp_path):
    assert load_run(trained).model_config.cell_set_len == 8
    out = infer_file(trained, synth_experiment.h5ad_paths[0], tmp_path / "pred.h5ad", options=InferOptions(seed=0))
    adata = ad.read_h5ad(out)
    # every set holds at most cell_set_len cells, so there are at least n_cells / 8 of them
    assert adata.uns["state_infer"]["n_sets"] >= math.ceil(adata.n_obs / 8)


def test_a_split_dir_without_train_cells_is_refused_before_anything_is_written(
    trained, tmp_path, train_cfg, synth_experiment
):
    manifest = SplitManifest.load(trained / SPLIT_DIR)
    dataclasses.replace(
        manifest, files=tuple(dataclasses.replace(f, train=np.zeros(0, dtype=np.int64)) for f in manifest.files)
    ).save(tmp_path / "split")
    cfg = train_cfg(synth_experiment, tmp_path / "out", "p", f"data.kwargs.split_dir={tmp_path / 'split'}")
    with pytest.raises(ConfigError, match="data.kwargs.split_dir: .* the train split has no cells"):
        preflight(cfg)
    assert not (tmp_path / "out").exists()
