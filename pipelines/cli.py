"""`state pipeline` commands: compile, run (locally through kfp.local), submit, schedule.

This module belongs to the `pipelines` app layer, not to the library: `state` finds it through the
`state_core.cli` entry point group (pyproject.toml), so `state_core` never imports `pipelines`. KFP is
imported only inside the command functions, after `_need_pipelines()`, so `state --help` stays fast and
without the `pipelines` extra a command says which extra to install instead of failing with an ImportError.
"""

from __future__ import annotations

import argparse
import sys

from state_core.extras import require

HELP = "Kubeflow pipelines: compile, run locally, submit, schedule"
PIPELINE_NAMES = ("train", "batch-infer", "retrain")


def _need_pipelines() -> None:
    for module in ("kfp", "kfp.kubernetes"):
        require(module, "pipelines", "`state pipeline`")


def _settings(args: argparse.Namespace):
    _need_pipelines()
    from components.image import STATE_IMAGE
    from pipelines.image_ref import pinned_image
    from pipelines.settings import PipelineSettings

    image, warning = pinned_image(args.image or STATE_IMAGE, args.image_digest, resolve=not args.no_resolve)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return PipelineSettings(image=image, multi_gpu=args.multi_gpu)


def _compile(args: argparse.Namespace) -> int:
    _need_pipelines()
    from pipelines.compile import compile_all, compile_pipeline

    if args.all:
        paths = compile_all(args.out, _settings(args))
    else:
        paths = [compile_pipeline(args.name, args.out, _settings(args))]
    for path in paths:
        print(f"compiled {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    _need_pipelines()
    from pipelines.local_run import LocalRunOptions, run_local

    if not args.local:
        print("error: only --local runs are supported here; use `state pipeline submit` for a Kubeflow host")
        return 2
    result = run_local(
        LocalRunOptions(
            out_dir=args.out,
            params=args.param,
            query=not args.no_query,
            cache=not args.no_cache,
            verbose=args.full_log,
        )
    )
    print(result.summary())
    return 0


def _target(args: argparse.Namespace):
    _need_pipelines()
    from pipelines.kfp_host import KfpAuth, KfpTarget

    return KfpTarget(
        host=args.host,
        experiment=args.experiment,
        namespace=args.namespace,
        settings=_settings(args),
        service_account=args.service_account or None,
        auth=KfpAuth.from_environment(args.token_file),
    )


def _submit(args: argparse.Namespace) -> int:
    _need_pipelines()
    from pipelines.kfp_host import submit_run

    run_id = submit_run(_target(args), args.name, args.param, run_name=args.run_name)
    print(f"run {run_id} started on {args.host}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    _need_pipelines()
    from pipelines.kfp_host import schedule_runs

    job = args.job_name or f"{args.name}-recurring"
    recurring_id = schedule_runs(
        _target(args),
        args.name,
        args.cron,
        args.param,
        job_name=job,
        max_concurrency=args.max_concurrency,
    )
    print(f"recurring run {recurring_id} ({job}, cron {args.cron!r}) created on {args.host}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image",
        help="container image for every task (default: the project image tag)",
    )
    p.add_argument(
        "--image-digest",
        metavar="SHA256",
        help="pin the image to this digest (sha256:...); default: ask the image's registry",
    )
    p.add_argument(
        "--no-resolve",
        action="store_true",
        help="do not ask the registry for the digest (the YAML then names a movable tag)",
    )
    p.add_argument(
        "--multi-gpu",
        action="store_true",
        help="give the GPU training task a memory-backed /dev/shm for NCCL (needed with gpu_count > 1)",
    )


def _add_host(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=PIPELINE_NAMES, help="which pipeline")
    p.add_argument(
        "--host",
        required=True,
        help="Kubeflow Pipelines API, e.g. http://localhost:8080",
    )
    p.add_argument("--experiment", default="state", help="experiment to file the run under [state]")
    p.add_argument("--namespace", help="profile namespace on multi-user Kubeflow (runs go there)")
    p.add_argument(
        "--service-account",
        default="state-pipeline-runner",
        help="Kubernetes service account the run's pods use (workload identity for gs://); "
        "empty for the namespace default [state-pipeline-runner]",
    )
    p.add_argument(
        "--token-file",
        help="file holding a bearer token; default: $STATE_KFP_TOKEN, $STATE_KFP_COOKIE, "
        "or the pod's Kubeflow service-account token when present",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter (JSON values allowed), repeatable",
    )
    _add_common(p)


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a pipeline to YAML for the Kubeflow UI")
    p.add_argument(
        "name",
        nargs="?",
        choices=PIPELINE_NAMES,
        default="train",
        help="which pipeline [train]",
    )
    p.add_argument("--out", required=True, help="output .yaml file, or a folder with --all")
    p.add_argument(
        "--all",
        action="store_true",
        help="compile every pipeline into the --out folder",
    )
    _add_common(p)
    p.set_defaults(func=_compile)

    p = sub.add_parser(
        "run",
        help="run the training pipeline on this machine (kfp.local) and query the model",
    )
    p.add_argument("--local", action="store_true", help="run with kfp.local's subprocess runner")
    p.add_argument(
        "--out",
        default="pipeline_out",
        help="folder for data, pipeline outputs and the model repository",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training-pipeline parameter, repeatable",
    )
    p.add_argument(
        "--no-query",
        action="store_true",
        help="skip serving the published model and querying it",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="rerun every step instead of reusing earlier results",
    )
    p.add_argument(
        "--verbose",
        dest="full_log",
        action="store_true",
        help="print kfp.local's full log (default: one line per stage; the full log is in <out>/pipeline.log)",
    )
    p.set_defaults(func=_run)

    p = sub.add_parser("submit", help="start one run on a Kubeflow Pipelines host")
    _add_host(p)
    p.add_argument("--run-name", help="name shown in the Runs list")
    p.set_defaults(func=_submit)

    p = sub.add_parser("schedule", help="create a recurring run on a Kubeflow Pipelines host")
    _add_host(p)
    p.add_argument(
        "--cron",
        required=True,
        help="cron expression, 5 fields ('0 2 * * *') or 6 with seconds",
    )
    p.add_argument("--job-name", help="name of the recurring run [<pipeline>-recurring]")
    p.add_argument("--max-concurrency", type=int, default=1, help="runs allowed at once [1]")
    p.set_defaults(func=_schedule)
