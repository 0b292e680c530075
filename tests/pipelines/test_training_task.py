"""The training task's start-up checks and the compile flags that set up its pod."""

from __future__ import annotations

import yaml

from state_core.cli.main import main
from state_core.pipeline_ops.training import SHARED_MEMORY_NEEDED, shared_memory_problem

DOCKER_DEFAULT_SHM = 64 << 20


def test_several_gpus_with_the_container_default_shm_stop_with_the_compile_fix():
    problem = shared_memory_problem(2, DOCKER_DEFAULT_SHM)
    assert problem is not None and problem.key == "gpu_count"
    assert "64 MiB" in problem.message and "--multi-gpu" in problem.hint


def test_one_gpu_or_a_mounted_shm_needs_nothing():
    assert shared_memory_problem(1, DOCKER_DEFAULT_SHM) is None
    assert shared_memory_problem(0, 0) is None
    assert shared_memory_problem(4, SHARED_MEMORY_NEEDED) is None


def _executors(path) -> dict:
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(documents) > 1 else {}


def test_compile_multi_gpu_mounts_shm_on_the_gpu_training_task_only(tmp_path, capsys):
    assert (
        main(["pipeline", "compile", "train", "--out", str(tmp_path / "multi.yaml"), "--multi-gpu", "--no-resolve"])
        == 0
    )
    assert main(["pipeline", "compile", "train", "--out", str(tmp_path / "one.yaml"), "--no-resolve"]) == 0
    multi, one = _executors(tmp_path / "multi.yaml"), _executors(tmp_path / "one.yaml")
    assert [name for name, body in multi.items() if "emptyDirMounts" in body] == ["exec-train-model"]
    assert not [name for name, body in one.items() if "emptyDirMounts" in body]
    assert "not pinned by digest (--no-resolve)" in capsys.readouterr().err
