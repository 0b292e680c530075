"""Start runs and recurring runs of our pipelines on a Kubeflow Pipelines host through `kfp.Client`.

Multi-user Kubeflow needs three things from a client: who it is (a token), which profile namespace the run
belongs to, and which Kubernetes service account its pods run as (the one bound to a Google service account
through workload identity, for `gs://` access). Credentials, first match wins:

  1. `STATE_KFP_COOKIE`: a browser session cookie (`authservice_session=...`), for a laptop behind Dex.
  2. `STATE_KFP_TOKEN` or `--token-file`: a bearer token (e.g. `kubectl create token ...`).
  3. In a pod: the projected service-account token Kubeflow mounts at
     /var/run/secrets/kubeflow/pipelines/token (or `$KF_PIPELINES_SA_TOKEN_PATH`), re-read on expiry.
  4. None: a port-forwarded single-user host.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp

from pipelines.compile import build_pipeline, compile_pipeline
from pipelines.settings import PipelineSettings
from state_core.errors import ConfigError, PipelineHostError, Problem
from state_core.pipeline_ops.run_arguments import parse_run_arguments
from state_core.pipeline_ops.schedule import to_kfp_cron


COOKIE_ENV = "STATE_KFP_COOKIE"
TOKEN_ENV = "STATE_KFP_TOKEN"
DEFAULT_SERVICE_ACCOUNT = "state-pipeline-runner"  # manifests/serviceaccount.yaml, one per profile namespace


@dataclass(frozen=True)
class KfpAuth:
    token_file: str | None = None  # a file holding a bearer token (also where a pod's projected token lives)
    token: str | None = None
    cookie: str | None = None

    @classmethod
    def from_environment(cls, token_file: str | None = None) -> KfpAuth:
        return cls(
            token_file=token_file, token=os.environ.get(TOKEN_ENV) or None, cookie=os.environ.get(COOKIE_ENV) or None
        )


@dataclass(frozen=True)
class KfpTarget:
    """Where and as whom to start runs."""

    host: str
    experiment: str = "state"
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    service_account: str | None = DEFAULT_SERVICE_ACCOUNT  # None: the namespace's default-editor
    auth: KfpAuth = field(default_factory=KfpAuth)


def client_credentials(auth: KfpAuth) -> dict[str, Any]:
    """`kfp.Client` keyword arguments for `auth` (see the module docstring for the order)."""
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV, KF_PIPELINES_SA_TOKEN_PATH
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    if auth.cookie:
        return {"cookies": auth.cookie}
    if auth.token:
        return {"existing_token": auth.token}
    path = auth.token_file or os.environ.get(KF_PIPELINES_SA_TOKEN_ENV)
    if path and not Path(path).is_file():
        raise ConfigError(
            "kfp credentials",
            Problem(path, "token file not found", "pass --token-file with a file that holds a bearer token"),
        )
    if path or Path(KF_PIPELINES_SA_TOKEN_PATH).is_file():
        return {"credentials": ServiceAccountTokenVolumeCredentials(path or KF_PIPELINES_SA_TOKEN_PATH)}
    return {}


def pipeline_parameters(name: str, settings: PipelineSettings | None = None) -> dict[str, bool]:
    """Parameter name -> optional? for pipeline `name`."""
    inputs = build_pipeline(name, settings).component_spec.inputs or {}
    return {key: bool(spec.optional) for key, spec in inputs.items()}


def _client(target: KfpTarget) -> kfp.Client:
    try:
        return kfp.Client(host=target.host, namespace=target.namespace or "kubeflow", **client_credentials(target.auth))
    except ConfigError:
        raise
    except Exception as err:  # kfp raises urllib3/ApiException types that vary by version
        raise PipelineHostError(
            f"cannot reach the Kubeflow Pipelines host {target.host}: {err}; "
            "check --host (e.g. http://localhost:8080 after kubectl port-forward)"
        ) from err


def _compiled(name: str, target: KfpTarget, folder: Path) -> str:
    return str(compile_pipeline(name, folder / f"{name}.yaml", target.settings))


def submit_run(
    target: KfpTarget,
    name: str,
    params: list[str],
    run_name: str | None = None,
    enable_caching: bool | None = None,
) -> str:
    """Start one run of pipeline `name` with `key=value` params; returns the run id."""
    arguments: dict[str, Any] = parse_run_arguments(params, pipeline_parameters(name, target.settings))
    client = _client(target)
    with tempfile.TemporaryDirectory() as tmp:
        result = client.create_run_from_pipeline_package(
            _compiled(name, target, Path(tmp)),
            arguments=arguments,
            run_name=run_name,
            experiment_name=target.experiment,
            namespace=target.namespace,
            enable_caching=enable_caching,
            service_account=target.service_account,
        )
    return str(result.run_id)


def schedule_runs(
    target: KfpTarget,
    name: str,
    cron: str,
    params: list[str],
    job_name: str,
    max_concurrency: int = 1,
) -> str:
    """Create a recurring run of pipeline `name` on `cron` (5 or 6 fields); returns the recurring-run id."""
    cron_expression = to_kfp_cron(cron)
    arguments = parse_run_arguments(params, pipeline_parameters(name, target.settings))
    client = _client(target)
    experiment = client.create_experiment(name=target.experiment, namespace=target.namespace)
    with tempfile.TemporaryDirectory() as tmp:
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=job_name,
            cron_expression=cron_expression,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=arguments,
            pipeline_package_path=_compiled(name, target, Path(tmp)),
            service_account=target.service_account,
        )
    return str(recurring.recurring_run_id)
