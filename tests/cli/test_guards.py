"""Guards that need more than one command: serve stop/start identity and port checks, re-splitting on a
changed TOML, and a few bad inputs run as real `state` processes (logging and exit status as users see them)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import TINY, run_cli

from state_core.config.train_config import parse_overrides
from state_core.data.splits import SplitManifest
from state_core.errors import ConfigError
from state_core.train.fit import train_st


def test_serve_stop_refuses_a_process_that_is_not_tritonserver():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = run_cli(["serve", "stop", "--pid", str(other.pid)])
        assert result.code == 2 and "not a tritonserver" in result.stderr
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()


def test_serve_start_on_a_busy_port_names_the_flag_to_change(corpus):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(["serve", "start", "--repository", str(corpus["repo"]), "--grpc-port", str(port)])
    assert result.code == 2
    assert "already in use" in result.stderr and "--grpc-port" in result.stderr


def _cfg(toml: Path, out: Path, *extra: str):
    return parse_overrides([f"data.kwargs.toml_config_path={toml}", f"output_dir={out}", "name=st", *TINY, *extra])


def test_a_run_stopped_before_its_first_checkpoint_is_re_split_with_the_new_toml(corpus, tmp_path):
    leftover = tmp_path / "st"
    shutil.copytree(corpus["run"], leftover)
    shutil.rmtree(leftover / "checkpoints")  # nothing to resume: the old split must not be reused
    run = train_st(_cfg(corpus["zeroshot"], tmp_path, "training.max_steps=1"))
    assert SplitManifest.load(run / "split").source == str(corpus["zeroshot"])


def test_resume_refuses_a_toml_changed_since_the_run_started(corpus, tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text(corpus["fewshot"].read_text().replace('synth = "synth"', f'synth = "{corpus["h5"].parent}"', 1))
    run = tmp_path / "st"
    shutil.copytree(corpus["run"], run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["output_dir"], config["data"]["kwargs"]["toml_config_path"] = str(tmp_path), str(toml)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    toml.write_text(toml.read_text().replace("val = ", "# val = ", 1))  # edited after the start: val perts train
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="changed since"):
        train_st(_cfg(toml, tmp_path, "training.max_steps=4"))
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "argv",
    [
        [
            "tx",
            "train",
            "data.kwargs.toml_config_path={fewshot}",
            "output_dir={out}",
            "training.lr=nan",
            "model.kwargs.hidden_size=8",
        ],
        ["tx", "infer", "--model_dir", "{run}", "--adata", "{bad}/nan.h5ad", "--output", "{out}/p.h5ad"],
        ["tx", "predict", "--output_dir", "{runs}/other_size"],
        ["serve", "stop", "--pid-file", "{bad}/random.bin"],
    ],
    ids=["train", "infer", "predict", "serve-stop"],
)
def test_a_real_state_process_prints_one_error_and_exits_2(argv, corpus, tmp_path):
    values = {
        "fewshot": corpus["fewshot"],
        "out": tmp_path / "out",
        "run": corpus["run"],
        "bad": corpus["bad"],
        "runs": corpus["root"] / "runs_bad",
    }
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "state_core.cli.main", *(a.format(**values) for a in argv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("error:") == 1
    assert not (tmp_path / "out").exists() and sorted(os.listdir(tmp_path)) == []


def test_serve_start_on_an_empty_gcs_repository_fails_at_once(gcs_bucket):
    result = run_cli(["serve", "start", "--repository", f"gs://{gcs_bucket}/models"])
    assert result.code == 2 and "holds no <model>/config.pbtxt" in result.stderr


def test_pipeline_run_local_with_a_bad_param_writes_nothing(tmp_path):
    from cli_helpers import run_cli

    out = tmp_path / "demo"
    result = run_cli(["pipeline", "run", "--local", "--out", str(out), "--param", "no_such_parameter=1"])
    assert result.code == 2 and "no_such_parameter" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not out.exists()
