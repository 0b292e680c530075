"""Compiled pipeline YAML: matches the golden files, is deterministic, loads back, carries GPU/retry/k8s settings.

Regenerate the golden files after an intended change with (the digest is an example; compile pins the
image to whatever digest it is given or the registry reports):

    state pipeline compile --all --out tests/pipelines/golden --image-digest sha256:5e1f...  (GOLDEN_DIGEST)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kfp import components

from components.image import STATE_IMAGE
from pipelines.compile import PIPELINES, compile_pipeline
from pipelines.image_ref import pin
from pipelines.settings import PipelineSettings

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_DIGEST = "sha256:5e1f6a3c0d2b4e8f9a7c1b3d5e7f9a0b2c4d6e8f0a1b3c5d7e9f1a2b4c6d8e0f"
GOLDEN_SETTINGS = PipelineSettings(image=pin(STATE_IMAGE, GOLDEN_DIGEST))
REGENERATE = f"state pipeline compile --all --out tests/pipelines/golden --image-digest {GOLDEN_DIGEST}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    return {name: compile_pipeline(name, out / f"{name}.yaml", GOLDEN_SETTINGS) for name in PIPELINES}


def _documents(path: Path) -> tuple[dict, dict]:
    """The pipeline spec and the kubernetes settings per executor (no second document: none at all)."""
    spec, *platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the pipeline, nested condition DAGs included, keyed by display name."""
    found = {}
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]:
        for task in dag["tasks"].values():
            found[task["taskInfo"]["name"]] = task
    return found


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_matches_golden_file(compiled, name):
    assert compiled[name].read_bytes() == (GOLDEN / f"{name}.yaml").read_bytes(), f"regenerate with: {REGENERATE}"


def test_compiles_byte_identically_twice(compiled, tmp_path):
    again = compile_pipeline("train", tmp_path / "train.yaml", GOLDEN_SETTINGS)
    assert again.read_bytes() == compiled["train"].read_bytes()


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_loads_back_with_kfp(compiled, name):
    loaded = components.load_component_from_file(str(compiled[name]))
    assert loaded.name.startswith("state-")


def test_training_task_requests_gpu_from_run_parameters(compiled):
    spec, _ = _documents(compiled["train"])
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "{{$.inputs.parameters['pipelinechannel--gpu_count']}}"
    assert resources["accelerator"]["resourceType"] == "{{$.inputs.parameters['pipelinechannel--gpu_resource']}}"


def test_baseline_training_stays_on_cpu(compiled):
    spec, _ = _documents(compiled["train"])
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-train-model-2"]["container"].get(
        "resources", {}
    )


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
    assert train["nodeSelector"] == {"nodeSelectorJson": {"componentInputParameter": "gpu_node_selector"}}
    assert train["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
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
    path = compile_pipeline("train", tmp_path / "t.yaml", PipelineSettings(image="registry.local/state:dev"))
    spec, _ = _documents(path)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.local/state:dev"}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_task_runs_the_image_pinned_by_digest(compiled, name):
    spec, _ = _documents(compiled[name])
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {f"{STATE_IMAGE}@{GOLDEN_DIGEST}"}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_task_has_cpu_and_memory_requests_and_limits(compiled, name):
    spec, _ = _documents(compiled[name])
    for executor, body in spec["deploymentSpec"]["executors"].items():
        if "importer" in body:
            continue  # the importer is run by the KFP driver, not in a pod of ours
        resources = body["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert resources.get(key), f"{name}: {executor} has no {key}"


def _component_tasks(spec: dict):
    """(task name, task, the inputs its component declares) for every task of every DAG."""
    components = spec["components"]
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in components.values() if "dag" in c]:
        for task_name, task in dag["tasks"].items():
            declared = components[task["componentRef"]["name"]].get("inputDefinitions", {}).get("parameters", {})
            yield task_name, task, declared


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_each_pipeline_passes_every_parameter_its_steps_need(compiled, name):
    """No step input falls back to its default or a constant: each comes from a pipeline parameter or an
    upstream task (a hand-copied parameter list once dropped the column names of retraining)."""
    spec, _ = _documents(compiled[name])
    for task_name, task, declared in _component_tasks(spec):
        given = task.get("inputs", {}).get("parameters", {})
        missing = sorted(set(declared) - set(given))
        assert not missing, f"{name}: task {task_name} gets no value for {missing}"
        # KFP passes resource settings made from run parameters as placeholder "constants"; those are fine
        constants = sorted(
            k
            for k, v in given.items()
            if "runtimeValue" in v and "pipelinechannel--" not in str(v["runtimeValue"].get("constant", ""))
        )
        assert not constants, f"{name}: task {task_name} gets constants for {constants}"


def test_retraining_exposes_every_training_parameter(compiled):
    train = _documents(compiled["train"])[0]["root"]["inputDefinitions"]["parameters"]
    retrain = _documents(compiled["retrain"])[0]["root"]["inputDefinitions"]["parameters"]
    assert set(train) <= set(retrain)
    assert {k: train[k].get("defaultValue") for k in train} == {k: retrain[k].get("defaultValue") for k in train}


def test_data_steps_take_the_data_fingerprint(compiled):
    spec, _ = _documents(compiled["train"])
    tasks = _tasks(spec)
    for step_name in (
        "split",
        "embed",
        "train candidate",
        "train baseline",
        "evaluate candidate",
        "evaluate baseline",
        "export ONNX",
    ):
        source = tasks[step_name]["inputs"]["parameters"]["data_fingerprint"]
        assert (
            source == {"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "fingerprint-data"}}
            or "componentInputParameter" in source
        ), step_name
    assert tasks["data fingerprint"]["cachingOptions"] == {}


def test_multi_gpu_training_gets_shared_memory(tmp_path):
    path = compile_pipeline("train", tmp_path / "t.yaml", PipelineSettings(multi_gpu=True))
    _, executors = _documents(path)
    assert executors["exec-train-model"]["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}
    ]
    assert "emptyDirMounts" not in executors["exec-train-model-2"]  # the baseline trains on CPU


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_single_gpu_compile_mounts_no_shared_memory(compiled, name):
    _, executors = _documents(compiled[name])
    assert not [e for e, body in executors.items() if "emptyDirMounts" in body]


def test_batch_inference_without_gpu_is_not_pinned_to_the_gpu_pool(compiled):
    spec, platform = _documents(compiled["batch-infer"])
    predict = platform.get("exec-predict-cells", {})
    assert "nodeSelector" not in predict and "tolerations" not in predict
    assert spec["root"]["inputDefinitions"]["parameters"]["gpu_count"]["defaultValue"] == 0
