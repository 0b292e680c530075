"""Training-split statistics of the non-learned baselines."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from state_core.data.splits import SplitManifest
from state_core.data.vocab import Vocab
from state_core.errors import ConfigError
from state_core.runs.layout import SPLIT_DIR, VOCAB_FILE
from state_core.train.baseline_stats import train_group_means


def test_an_empty_train_split_is_a_config_error(trained):
    manifest = SplitManifest.load(trained / SPLIT_DIR)
    no_train = dataclasses.replace(
        manifest, files=tuple(dataclasses.replace(f, train=np.zeros(0, dtype=np.int64)) for f in manifest.files)
    )
    with pytest.raises(ConfigError, match="train split has no cells"):
        train_group_means(no_train, Vocab.load(trained / VOCAB_FILE), "X_hvg")
