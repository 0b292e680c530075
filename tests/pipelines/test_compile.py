"""Compiled pipeline YAML: matches the golden files, is deterministic, loads back, carries GPU/retry/k8s settings.

Regenerate the golden files after an intended change with:

    state pipeline compile --all --out tests/pipelines/golden
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kfp import components

from pipelines.compile import PIPELINES, compile_pipeline
from pipelines.settings import PipelineSettings

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = "state pipeline compile --all --out tests/pipelines/golden"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    return {name: compile_pipeline(name, out / f"{name}.yaml") for name in PIPELINES}


def _documents(path: Path) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, nested condition DAGs included, keyed by display name."""
    found = {}
    for dag in [spec["root"]["dag"]] + [
        c["dag"] for c in spec["components"].values() if "dag" in c
    ]:
        for task in dag["tasks"].values():
            found[task["taskInfo"]["name"]] = task
    return found


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_matches_golden_file(compiled, name):
    assert compiled[name].read_bytes() == (GOLDEN / f"{name}.yaml").read_bytes(), (
        f"regenerate with: {REGENERATE}"
    )


def test_compiles_byte_identically_twice(compiled, tmp_path):
    again = compile_pipeline("train", tmp_path / "train.yaml")
    assert again.read_bytes() == compiled["train"].read_bytes()


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_loads_back_with_kfp(compiled, name):
    loaded = components.load_component_from_file(str(compiled[name]))
    assert loaded.name.startswith("state-")


def test_training_task_requests_gpu_from_run_parameters(compiled):
    spec, _ = _documents(compiled["train"])
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"][
        "resources"
    ]
    assert (
        resources["accelerator"]["resourceCount"]
        == "{{$.inputs.parameters['pipelinechannel--gpu_count']}}"
    )
    assert (
        resources["accelerator"]["resourceType"]
        == "{{$.inputs.parameters['pipelinechannel--gpu_resource']}}"
    )


def test_baseline_training_stays_on_cpu(compiled):
    spec, _ = _documents(compiled["train"])
    assert "accelerator" not in spec["deploymentSpec"]["executors"][
        "exec-train-model-2"
    ]["container"].get("resources", {})


def test_preemptible_steps_retry_and_gate_never_caches(compiled):
    tasks = _tasks(_documents(compiled["train"])[0])
    for name in (
        "train candidate",
        "train baseline",
        "evaluate candidate",
        "export ONNX",
    ):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] == 3, name
    assert tasks["split"]["cachingOptions"] == {"enableCache": True}
    assert tasks["promotion gate"]["cachingOptions"] == {}
    assert tasks["publish to Triton"]["cachingOptions"] == {}


def test_publish_runs_only_under_the_gate_condition(compiled):
    spec, _ = _documents(compiled["train"])
    root_tasks = spec["root"]["dag"]["tasks"]
    assert "publish-model" not in root_tasks
    condition = root_tasks["condition-1"]["triggerPolicy"]["condition"]
    assert "promotion-gate" in condition and "true" in condition


def test_kubernetes_settings_on_gpu_task(compiled):
    _, executors = _documents(compiled["train"])
    train = executors["exec-train-model"]
    assert train["nodeSelector"] == {
        "nodeSelectorJson": {"componentInputParameter": "gpu_node_selector"}
    }
    assert train["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    assert train["activeDeadlineSeconds"] == "86400"
    assert "nodeSelector" not in executors["exec-train-model-2"]


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_parameter_has_a_description(compiled, name):
    spec, _ = _documents(compiled[name])
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert all(p.get("description") for p in parameters.values()), [
        k for k, p in parameters.items() if not p.get("description")
    ]


def test_components_do_not_pip_install_at_pod_start(compiled):
    spec, _ = _documents(compiled["train"])
    for name, executor in spec["deploymentSpec"]["executors"].items():
        assert "pip install" not in " ".join(executor["container"]["command"]), name


def test_image_setting_reaches_every_task(tmp_path):
    path = compile_pipeline(
        "train", tmp_path / "t.yaml", PipelineSettings(image="registry.local/state:dev")
    )
    spec, _ = _documents(path)
    images = {
        e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()
    }
    assert images == {"registry.local/state:dev"}
