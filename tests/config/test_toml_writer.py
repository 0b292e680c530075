"""The TOML writer: what it writes reads back as the same document."""

from __future__ import annotations

import tomllib

from state_core.config.toml_writer import dumps


def test_toml_round_trips_experiment_tables():
    document = {
        "datasets": {"ds": "/data/ds"},
        "training": {"ds": "train"},
        "zeroshot": {"ds.ct_a": "test"},
        "fewshot": {"ds.ct_b": {"val": ["g1"], "test": ["g2", "g3"]}},
    }
    assert tomllib.loads(dumps(document)) == document
