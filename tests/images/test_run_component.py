"""images/run_component.py builds the executor input KFP's launcher would, so a compiled task runs as in a pod.

Here the compiled command runs on this machine instead of in the image (images/build_check.sh runs it in
the image): the fingerprint task of the golden YAML, through `python3 -m kfp.dsl.executor_main`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from state_core.pipeline_ops.fingerprint import experiment_fingerprint

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_TRAIN = ROOT / "tests" / "pipelines" / "golden" / "train.yaml"


def _run_component():
    spec = importlib.util.spec_from_file_location("run_component", ROOT / "images" / "run_component.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_compiled_fingerprint_task_runs_from_the_executor_input(synth_experiment, tmp_path):
    tool = _run_component()
    spec = next(yaml.safe_load_all(GOLDEN_TRAIN.read_text()))
    toml = str(synth_experiment.fewshot_toml)
    payload = tool.executor_input(spec, "exec-fingerprint-data", {"experiment_toml": toml}, tmp_path)
    argv = tool.command_line(spec, "exec-fingerprint-data", payload)
    assert argv[:2] == ["sh", "-ec"] and json.loads(argv[argv.index("--executor_input") + 1]) == payload
    # the command calls `python3`: this interpreter's folder first, as the image's venv is on its PATH
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=300)
    output = json.loads((tmp_path / "executor_output.json").read_text())
    assert output["parameterValues"]["Output"] == experiment_fingerprint(toml)


def test_every_output_artifact_gets_a_uri_under_the_work_folder(tmp_path):
    tool = _run_component()
    spec = next(yaml.safe_load_all(GOLDEN_TRAIN.read_text()))
    payload = tool.executor_input(spec, "exec-split-cells", {}, tmp_path)
    uris = {name: body["artifacts"][0]["uri"] for name, body in payload["outputs"]["artifacts"].items()}
    assert uris == {"split": str(tmp_path / "outputs" / "split"), "summary": str(tmp_path / "outputs" / "summary")}
