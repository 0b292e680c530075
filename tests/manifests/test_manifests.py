"""Kubernetes manifests: valid against the Kubernetes schemas (strict) and wired to each other."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSION = "1.30.0"  # GKE regular channel at the time of writing


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [
            (f"{path.name}:{d['kind']}/{d['metadata']['name']}", d) for d in yaml.safe_load_all(path.read_text()) if d
        ]
    return docs


DOCUMENTS = _documents()


def _one(kind: str, name: str) -> dict:
    return next(d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("label, document", DOCUMENTS, ids=[label for label, _ in DOCUMENTS])
def test_valid_against_kubernetes_schema(label, document):
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def test_every_expected_kind_is_present():
    kinds = {d["kind"] for _, d in DOCUMENTS}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ServiceAccount",
        "NetworkPolicy",
        "CronJob",
    } <= kinds


def test_triton_runs_non_root_on_a_gpu_with_probes():
    pod = _one("Deployment", "state-triton")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert any(arg.startswith("--model-repository=gs://") for arg in container["args"])


def test_service_selects_the_deployment_pods_and_exposes_grpc():
    service = _one("Service", "state-triton")
    pod_labels = _one("Deployment", "state-triton")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {
        p["name"] for p in _one("Deployment", "state-triton")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert any(p["port"] == 8001 and p["name"] == "grpc" for p in service["spec"]["ports"])


def test_deployment_uses_the_workload_identity_service_account():
    account = _one("ServiceAccount", "state-triton")
    pod = _one("Deployment", "state-triton")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert "iam.gke.io/gcp-service-account" in account["metadata"]["annotations"]


def test_hpa_and_network_policy_target_the_deployment():
    hpa = _one("HorizontalPodAutoscaler", "state-triton")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "state-triton"
    policy = _one("NetworkPolicy", "state-triton")
    pod_labels = _one("Deployment", "state-triton")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_recurring_run_submits_the_retrain_pipeline_with_its_required_parameters():
    from pipelines.kfp_host import pipeline_parameters

    container = _one("CronJob", "state-retrain-nightly")["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = container["args"]
    assert args[:3] == ["pipeline", "submit", "retrain"]
    given = {a.removeprefix("--param=").split("=", 1)[0] for a in args if a.startswith("--param=")}
    required = {name for name, optional in pipeline_parameters("retrain").items() if not optional}
    assert required <= given


def test_hpa_scales_on_the_triton_queue_metric_the_adapter_defines():
    hpa = _one("HorizontalPodAutoscaler", "state-triton")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods"
    rules = yaml.safe_load(_one("ConfigMap", "state-triton-adapter-rules")["data"]["config.yaml"])["rules"]
    assert metric["pods"]["metric"]["name"] in {r["name"]["as"] for r in rules}
    assert all("nv_inference_queue_duration_us" in r["seriesQuery"] for r in rules)


def test_network_policy_admits_kubeflow_profile_namespaces():
    policy = _one("NetworkPolicy", "state-triton")
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {"app.kubernetes.io/part-of": "kubeflow-profile"}}} in sources


def test_recurring_run_authenticates_and_runs_in_the_profile_namespace_as_the_runner():
    cron = _one("CronJob", "state-retrain-nightly")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    namespace = cron["metadata"]["namespace"]
    assert f"--namespace={namespace}" in args
    runner = _one("ServiceAccount", "state-pipeline-runner")
    assert f"--service-account={runner['metadata']['name']}" in args
    assert runner["metadata"]["namespace"] == namespace
    assert "iam.gke.io/gcp-service-account" in runner["metadata"]["annotations"]
    token = next(v for v in pod["volumes"] if v["name"] == "kfp-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "kfp-token")
    assert mount["mountPath"] == "/var/run/secrets/kubeflow/pipelines"
    assert _one("ServiceAccount", "state-retrain-submitter")["metadata"]["namespace"] == namespace


def test_runner_and_submitter_have_role_bindings():
    bound = {(d["roleRef"]["name"], d["subjects"][0]["name"]) for _, d in DOCUMENTS if d["kind"] == "RoleBinding"}
    assert ("kubeflow-edit", "state-pipeline-runner") in bound
    assert ("kubeflow-pipelines-edit", "state-retrain-submitter") in bound
