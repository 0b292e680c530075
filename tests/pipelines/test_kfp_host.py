"""`state pipeline submit` / `schedule` send the right REST calls to a Kubeflow host (a local recording stub)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines.kfp_host import KfpTarget, submit_run
from state_core.cli.main import main
from state_core.errors import ConfigError, PipelineHostError, ServingError

REQUIRED = [
    "--param",
    "experiment_toml=gs://bucket/exp.toml",
    "--param",
    "model_repository=gs://bucket/models",
]


@dataclass
class Recorded:
    method: str
    path: str
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


class KfpStub(BaseHTTPRequestHandler):
    """Answers the v2beta1 endpoints kfp.Client uses with minimal valid bodies and records every request."""

    requests: list[Recorded]

    def _answer(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size) if size else b""
        self.requests.append(
            Recorded(
                self.command, self.path, json.loads(raw) if raw else {}, {k.lower(): v for k, v in self.headers.items()}
            )
        )
        if "/experiments" in self.path:
            reply = (
                {
                    "experiments": [{"experiment_id": "exp-1", "display_name": "state"}],
                    "total_size": 1,
                }
                if self.command == "GET"
                else {"experiment_id": "exp-1", "display_name": "state"}
            )
        elif "/recurringruns" in self.path:
            reply = {"recurring_run_id": "rr-1"}
        elif "/runs" in self.path:
            reply = {"run_id": "run-1"}
        else:
            reply = {}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def kfp_host() -> Iterator[tuple[str, list[Recorded]]]:
    recorded: list[Recorded] = []
    handler = type("RecordingStub", (KfpStub,), {"requests": recorded})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    server.shutdown()
    server.server_close()


def _posted(recorded: list[Recorded], suffix: str) -> dict:
    bodies = [r.body for r in recorded if r.method == "POST" and r.path.endswith(suffix)]
    assert len(bodies) == 1, [r.path for r in recorded]
    return bodies[0]


def test_submit_posts_compiled_pipeline_with_typed_parameters(kfp_host, capsys):
    host, recorded = kfp_host
    code = main(
        [
            "pipeline",
            "submit",
            "train",
            "--host",
            host,
            *REQUIRED,
            "--param",
            "gpu_count=2",
            "--param",
            'gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}',
        ]
    )
    assert code == 0 and "run-1" in capsys.readouterr().out
    body = _posted(recorded, "/apis/v2beta1/runs")
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "state-train"
    assert "kubernetes" in body["pipeline_spec"]["platform_spec"]["platforms"]
    parameters = body["runtime_config"]["parameters"]
    assert parameters["gpu_count"] == 2
    assert parameters["gpu_node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}


def test_schedule_posts_six_field_cron_without_catchup(kfp_host):
    host, recorded = kfp_host
    code = main(
        [
            "pipeline",
            "schedule",
            "retrain",
            "--host",
            host,
            "--cron",
            "0 2 * * *",
            "--job-name",
            "nightly-retrain",
            *REQUIRED,
        ]
    )
    assert code == 0
    body = _posted(recorded, "/apis/v2beta1/recurringruns")
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert body["display_name"] == "nightly-retrain"
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "state-retrain"


def test_bad_cron_fails_before_contacting_the_host(kfp_host, capsys):
    host, recorded = kfp_host
    assert (
        main(
            [
                "pipeline",
                "schedule",
                "retrain",
                "--host",
                host,
                "--cron",
                "every night",
                *REQUIRED,
            ]
        )
        == 2
    )
    assert "--cron" in capsys.readouterr().err
    assert recorded == []


def test_unknown_and_missing_parameters_are_reported_together(kfp_host):
    host, recorded = kfp_host
    with pytest.raises(ConfigError) as err:
        submit_run(KfpTarget(host=host), "train", ["gpu_cont=2"])
    message = str(err.value)
    assert "gpu_cont" in message and "experiment_toml" in message and "model_repository" in message
    assert recorded == []


def test_user_token_service_account_and_namespace_reach_the_host(kfp_host, monkeypatch):
    host, recorded = kfp_host
    monkeypatch.setenv("STATE_KFP_TOKEN", "user-token-123")
    code = main(
        [
            "pipeline",
            "submit",
            "retrain",
            "--host",
            host,
            "--namespace",
            "team-perturb",
            "--service-account",
            "state-runner",
            *REQUIRED,
        ]
    )
    assert code == 0
    body = _posted(recorded, "/apis/v2beta1/runs")
    assert body["service_account"] == "state-runner"
    assert all(r.headers.get("authorization") == "Bearer user-token-123" for r in recorded)
    experiments = [r for r in recorded if "/experiments" in r.path]
    assert any("team-perturb" in r.path or r.body.get("namespace") == "team-perturb" for r in experiments)


def test_pod_token_file_is_the_credential_inside_a_cluster(kfp_host, tmp_path, monkeypatch):
    host, recorded = kfp_host
    token = tmp_path / "token"
    token.write_text("pod-sa-token")
    monkeypatch.delenv("STATE_KFP_TOKEN", raising=False)
    monkeypatch.delenv("STATE_KFP_COOKIE", raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    assert main(["pipeline", "schedule", "retrain", "--host", host, "--cron", "0 2 * * *", *REQUIRED]) == 0
    body = _posted(recorded, "/apis/v2beta1/recurringruns")
    assert body["service_account"] == "state-pipeline-runner"
    assert [r for r in recorded if r.method == "POST"]
    assert all(r.headers.get("authorization") == "Bearer pod-sa-token" for r in recorded if r.method == "POST")


def test_session_cookie_is_sent_as_a_cookie(kfp_host, monkeypatch):
    host, recorded = kfp_host
    monkeypatch.setenv("STATE_KFP_COOKIE", "authservice_session=abc")
    assert main(["pipeline", "submit", "train", "--host", host, *REQUIRED]) == 0
    assert all(r.headers.get("cookie") == "authservice_session=abc" for r in recorded)


def test_missing_token_file_is_one_clear_error(kfp_host, tmp_path, capsys):
    host, recorded = kfp_host
    code = main(["pipeline", "submit", "train", "--host", host, "--token-file", str(tmp_path / "nope"), *REQUIRED])
    assert code != 0 and "token file not found" in capsys.readouterr().err
    assert recorded == []


def test_an_unreachable_host_is_a_pipeline_host_error_not_a_serving_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = KfpTarget(host=f"http://127.0.0.1:{port}", experiment="state")
    with pytest.raises(PipelineHostError, match="cannot reach the Kubeflow Pipelines host") as err:
        submit_run(target, "train", REQUIRED[1::2])
    assert not isinstance(err.value, ServingError)
