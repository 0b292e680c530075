"""A preempted training task resumes from its durable checkpoint URI: kill a local run mid-training, start
the task again in a fresh folder (a new pod), and it continues from the mirrored `last.ckpt`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state_core.config.experiment import ObsColumns
from state_core.data.splits import run_split
from state_core.pipeline_ops.checkpoints import durable_key
from state_core.embed.experiment import EmbedOptions, embed_experiment

pytestmark = pytest.mark.slow

OVERRIDES = [
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=16",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=1",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=2",
    "training.batch_size=4",
    "training.max_steps=60",
    "training.val_freq=1000",
    "training.ckpt_every_n_steps=20",
    "training.progress_bar=false",
    "data.kwargs.embed_key=X_hvg",
]

SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from state_core.pipeline_ops.training import train_for_pipeline
embedded, split, run_dir, uri, *overrides = sys.argv[1:]
train_for_pipeline(embedded, split, run_dir, "state_sm", overrides, data_fingerprint="fp-1",
                   checkpoint_uri=uri, mirror_interval_s=0.2)
"""


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )


def test_killed_training_resumes_from_the_durable_checkpoint(synth_experiment, tmp_path):
    split = tmp_path / "split"
    run_split(synth_experiment.fewshot_toml, split, ObsColumns(), seed=0)
    embedded = tmp_path / "embedded"
    embed_experiment(synth_experiment.fewshot_toml, embedded, EmbedOptions(method="precomputed"))
    durable = tmp_path / "durable"
    mirrored = durable / durable_key("fp-1", "state_sm", OVERRIDES) / "checkpoints" / "last.ckpt"

    first = _start(
        [str(embedded), str(split), str(tmp_path / "pod1" / "model"), str(durable), *OVERRIDES], tmp_path / "first.log"
    )
    try:
        deadline = time.monotonic() + 600
        while not mirrored.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        first_log = (tmp_path / "first.log").read_text()
        assert first.poll() is None, "training ended before it could be killed:\n" + first_log
        assert mirrored.exists(), "no checkpoint reached the durable folder"
        os.kill(first.pid, signal.SIGKILL)  # a preempted node: no cleanup, no final sync
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert not (tmp_path / "pod1" / "model").exists()  # KFP would upload nothing from the killed task

    second = _start(
        [str(embedded), str(split), str(tmp_path / "pod2" / "model"), str(durable), *OVERRIDES], tmp_path / "second.log"
    )
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    assert "restored checkpoints from" in log and "resuming" in log
    finished = tmp_path / "pod2" / "model"
    assert (finished / "checkpoints" / "final.ckpt").is_file() and (finished / "model.safetensors").is_file()
    steps = sorted(int(p.stem.split("=")[1]) for p in (finished / "checkpoints").glob("step=*.ckpt"))
    assert steps[0] == 20 and steps[-1] == 60  # the first pod's checkpoint is part of the resumed run
    # a second preemption would resume from the newest state: last.ckpt is overwritten, never versioned
    assert not list((finished / "checkpoints").glob("last-v*.ckpt"))
    assert not list((durable / durable_key("fp-1", "state_sm", OVERRIDES) / "checkpoints").glob("last-v*.ckpt"))
