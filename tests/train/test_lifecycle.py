"""Run lifecycle: SIGTERM/SIGINT -> resumable checkpoint and exit 143/130, predict from a stopped run,
resume keeping the metrics history, keep-last-k checkpoints, weights-only final."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from state_core.train.fit import train_st
from tests.train.conftest import TINY


def _train_process(exp, out: Path, name: str) -> subprocess.Popen:
    args = [
        f"data.kwargs.toml_config_path={exp.fewshot_toml}",
        f"output_dir={out}",
        f"name={name}",
        *TINY,
        "training.max_steps=100000",
        "training.ckpt_every_n_steps=100000",
        "training.val_freq=100000",
        "training.log_every_n_steps=1",
        "training.num_threads=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "state_core.cli.main", "tx", "train", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_after_some_steps(proc: subprocess.Popen, run: Path, signum: int, min_rows: int = 3) -> tuple[int, str]:
    metrics = run / "version_0" / "metrics.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) > min_rows:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def _logged_steps(run: Path) -> list[int]:
    with (run / "version_0" / "metrics.csv").open(newline="") as file:
        return [int(r["step"]) for r in csv.DictReader(file) if r.get("train_loss")]


@pytest.mark.slow
def test_sigterm_writes_a_resumable_checkpoint_then_predict_and_resume_keep_history(
    synth_experiment, tmp_path, train_cfg
):
    from state_core.train.predict import predict_test_split

    run = tmp_path / "st"
    code, err = _stop_after_some_steps(_train_process(synth_experiment, tmp_path, "st"), run, signal.SIGTERM)
    assert code == 143, err
    assert "Traceback" not in err and "resumable checkpoint" in err
    last = run / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert 0 < stopped_at < 100000
    assert not (run / "model.safetensors").exists()  # not a finished run ...
    out = predict_test_split(run, checkpoint="last", evaluate=False)  # ... but its checkpoints are usable
    assert (out / "adata_pred.h5ad").is_file()
    before = _logged_steps(run)
    assert before and max(before) < stopped_at

    resumed = train_st(
        train_cfg(
            synth_experiment,
            tmp_path,
            "st",
            f"training.max_steps={stopped_at + 3}",
            "training.ckpt_every_n_steps=100000",
            "training.val_freq=100000",
            "training.log_every_n_steps=1",
            "training.num_threads=1",
        )
    )
    after = _logged_steps(resumed)
    assert after[: len(before)] == before  # history kept, in order
    assert after == list(range(stopped_at + 3))  # every step exactly once, none lost or repeated


@pytest.mark.slow
def test_sigint_stops_with_exit_130_and_a_checkpoint(synth_experiment, tmp_path):
    run = tmp_path / "st"
    code, err = _stop_after_some_steps(_train_process(synth_experiment, tmp_path, "st"), run, signal.SIGINT, 1)
    assert code == 130, err
    assert "Traceback" not in err
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_only_the_last_k_periodic_checkpoints_are_kept(synth_experiment, tmp_path, train_cfg):
    run = train_st(
        train_cfg(
            synth_experiment,
            tmp_path,
            "k",
            "training.max_steps=6",
            "training.ckpt_every_n_steps=1",
            "training.val_freq=100",
            "training.keep_last_checkpoints=2",
        )
    )
    periodic = sorted(p.name for p in (run / "checkpoints").glob("step=*.ckpt") if "val_loss" not in p.name)
    assert periodic == ["step=5.ckpt", "step=6.ckpt"]


def test_final_checkpoint_holds_weights_only(trained):
    final = torch.load(trained / "checkpoints" / "final.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert "optimizer_states" in last and "optimizer_states" not in final
    assert final["state_dict"].keys() == last["state_dict"].keys()
