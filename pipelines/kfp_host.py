"""Start runs and recurring runs of our pipelines on a Kubeflow Pipelines host through `kfp.Client`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp

from pipelines.compile import build_pipeline, compile_pipeline
from pipelines.settings import PipelineSettings
from state_core.errors import ServingError
from state_core.pipeline_ops.run_arguments import parse_run_arguments
from state_core.pipeline_ops.schedule import to_kfp_cron


@dataclass(frozen=True)
class KfpTarget:
    """Where and as whom to start runs."""

    host: str
    experiment: str = "state"
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    settings: PipelineSettings = field(default_factory=PipelineSettings)


def pipeline_parameters(
    name: str, settings: PipelineSettings | None = None
) -> dict[str, bool]:
    """Parameter name -> optional? for pipeline `name`."""
    inputs = build_pipeline(name, settings).component_spec.inputs or {}
    return {key: bool(spec.optional) for key, spec in inputs.items()}


def _client(target: KfpTarget) -> kfp.Client:
    try:
        return kfp.Client(host=target.host, namespace=target.namespace or "kubeflow")
    except (
        Exception
    ) as err:  # kfp raises urllib3/ApiException types that vary by version
        raise ServingError(
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
    arguments: dict[str, Any] = parse_run_arguments(
        params, pipeline_parameters(name, target.settings)
    )
    client = _client(target)
    with tempfile.TemporaryDirectory() as tmp:
        result = client.create_run_from_pipeline_package(
            _compiled(name, target, Path(tmp)),
            arguments=arguments,
            run_name=run_name,
            experiment_name=target.experiment,
            namespace=target.namespace,
            enable_caching=enable_caching,
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
    experiment = client.create_experiment(
        name=target.experiment, namespace=target.namespace
    )
    with tempfile.TemporaryDirectory() as tmp:
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=job_name,
            cron_expression=cron_expression,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=arguments,
            pipeline_package_path=_compiled(name, target, Path(tmp)),
        )
    return str(recurring.recurring_run_id)
