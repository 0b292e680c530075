"""`state pipeline run --local`: the training pipeline on this machine through `kfp.local`, then a gRPC query.

    synthetic experiment -> kfp.local (split, embed, train ST + baseline, evaluate, gate, export, publish)
        -> local tritonserver on the model repository -> one prediction over gRPC

Tasks run as subprocesses of this Python (`SubprocessRunner(use_venv=False)`, no pip at run time). The
published model uses Triton's python backend, because the bundled local tritonserver has no ONNX Runtime
backend; the cluster pipeline publishes the same files for the onnxruntime backend.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from state_core.errors import ArtifactError

log = logging.getLogger(__name__)

# Small enough for CI on two cores, large enough that the ST model beats the mean baseline.
LOCAL_TRAIN_OVERRIDES = [
    "model.kwargs.hidden_dim=64",
    "model.kwargs.cell_set_len=32",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=2",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
    "training.batch_size=8",
    "training.max_steps=200",
    "training.val_freq=100",
    "training.ckpt_every_n_steps=100",
    "training.lr=3e-4",
    "training.progress_bar=false",
    "data.kwargs.embed_key=X_hvg",
]
LOCAL_BASELINE_OVERRIDES = [
    "training.max_steps=1",
    "training.progress_bar=false",
    "data.kwargs.embed_key=X_hvg",
]


@dataclass(frozen=True)
class LocalRunOptions:
    out_dir: str = "pipeline_out"
    params: list[str] = field(default_factory=list)  # key=value overrides of training-pipeline parameters
    query: bool = True  # serve the published model and send one gRPC request
    cache: bool = True  # reuse finished pure steps (split ... export) of earlier runs with the same inputs
    n_cells: int = 3000
    seed: int = 0
    verbose: bool = False  # print kfp.local's full log instead of one line per stage (it always goes to the log file)


@dataclass(frozen=True)
class LocalRunResult:
    run_root: Path  # kfp.local outputs of this run, one folder per task
    model_repository: Path
    published_version: int | None  # None: the gate held the candidate
    gate_decision: Path
    metrics: dict[str, float]
    report_html: Path  # the comparison page: candidate / baseline / serving, per cell type, gate outcome
    query: str = ""
    log_file: Path | None = None  # kfp.local's full output
    gate_metric: str = ""

    def summary(self) -> str:
        published = (
            f"published {self.model_repository} version {self.published_version}"
            if self.published_version
            else "gate held the candidate: nothing published"
        )
        reason = self.gate_decision.read_text().strip().splitlines()[-1]
        figure = self.metrics.get(self.gate_metric)
        lines = [
            "summary:",
            f"  {published}",
            f"  gate: {reason}",
        ]
        if figure is not None:
            lines.append(f"  candidate {self.gate_metric} = {figure:.4g}")
        if self.query:
            lines.append(f"  gRPC query: {self.query}")
        lines.append(f"  report:   {self.report_html}")
        if self.log_file:
            lines.append(f"  full log: {self.log_file}")
        lines.append(f"  outputs:  {self.run_root}")
        return "\n".join(lines)


def _synthetic_experiment(data_dir: Path, n_cells: int, seed: int) -> Path:
    import json
    from dataclasses import asdict

    from state_core.atomic import atomic_write_text
    from state_core.data.synth import SynthSpec, write_synthetic_experiment

    spec = SynthSpec(
        n_cells=n_cells,
        n_genes=200,
        n_cell_types=3,
        n_perturbations=12,
        n_batches=2,
        seed=seed,
    )
    # Reuse the files of an earlier run with the same spec: rewritten files get new mtimes, hence a new data
    # fingerprint, and every data step of a rerun would miss the cache and train again.
    stamp, toml = data_dir / "synth_spec.json", data_dir / "fewshot.toml"
    wanted = json.dumps({**asdict(spec), "num_hvgs": 64}, sort_keys=True, default=str)
    if toml.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return toml
    toml = write_synthetic_experiment(data_dir, spec, num_hvgs=64).fewshot_toml
    atomic_write_text(stamp, wanted)
    return toml


def _given_arguments(params: list[str]) -> dict:
    """The user's `--param` values, checked before anything is written."""
    from pipelines.kfp_host import pipeline_parameters
    from state_core.pipeline_ops.run_arguments import parse_run_arguments

    return parse_run_arguments(list(params), {k: True for k in pipeline_parameters("train")})


def _arguments(experiment_toml: Path, repository: Path, given: dict) -> dict:
    # The bundled test split is tiny (three perturbations per cell type), so coarse or NaN-prone metrics
    # decide by chance. de_direction_match is 0 for context_mean (it predicts no change) and positive for any
    # model that learned some effect, so a short CPU run decides the gate the same way every time.
    defaults = {
        "experiment_toml": str(experiment_toml),
        "model_repository": str(repository),
        "triton_backend": "python",
        "gate_metric": "de_direction_match",
        "higher_is_better": True,
        "train_overrides": LOCAL_TRAIN_OVERRIDES,
        "baseline_overrides": LOCAL_BASELINE_OVERRIDES,
    }
    return {**defaults, **given}


def task_output(pipeline_root: Path, task: str, output: str) -> Path:
    """The newest `<run>/<task>/<output>`: a cached task writes nothing in the new run's folder, its
    outputs stay where the run that computed them put them."""
    runs = sorted(pipeline_root.glob("state-train-*"), reverse=True)  # names end in a sortable timestamp
    for run in runs:
        if (run / task / output).exists():
            return run / task / output
    raise ArtifactError(f"{pipeline_root}: no run left {task}/{output}; see the task log above")


def _latest_run(pipeline_root: Path) -> Path:
    runs = sorted(pipeline_root.glob("state-train-*"))
    if not runs:
        raise ArtifactError(f"{pipeline_root}: kfp.local wrote no run folder")
    return runs[-1]


def _query(repository: Path, model_name: str, work_dir: Path, run_dir: Path, adata_path: Path) -> str:
    """Serve the repository, predict a slice of the data over gRPC, stop the server."""
    import anndata as ad

    from state_core.serve.local_server import start_server, stop_server
    from state_core.train.infer import infer_file

    work_dir.mkdir(parents=True, exist_ok=True)
    sample = work_dir / "query_input.h5ad"
    ad.read_h5ad(adata_path)[:256].copy().write_h5ad(sample)
    server = start_server(repository, work_dir)
    try:
        out = infer_file(
            run_dir,
            sample,
            work_dir / "query_predictions.h5ad",
            triton_url=server.grpc_url,
            model_name=model_name,
        )
    finally:
        stop_server(server.pid)
    predicted = ad.read_h5ad(out)
    return f"{predicted.n_obs} cells predicted by {model_name} at {server.grpc_url} -> {out}"


def run_local(options: LocalRunOptions) -> LocalRunResult:
    """Run the training pipeline locally on the bundled synthetic dataset (see the module docstring)."""
    from kfp import local

    from pipelines.local_progress import display_names, executor_figure
    from pipelines.settings import PipelineSettings
    from pipelines.training import build_training_pipeline
    from state_core.pipeline_ops.evaluation import metrics_from_metadata
    from state_core.pipeline_ops.publish_record import serving_record

    given = _given_arguments(options.params)  # a bad --param fails before data or a repository is written
    out = Path(options.out_dir).resolve()
    repository = out / "model_repository"
    repository.mkdir(parents=True, exist_ok=True)
    toml = _synthetic_experiment(out / "data", options.n_cells, options.seed)
    arguments = _arguments(toml, repository, given)
    before = serving_record(str(repository), arguments.get("model_name", "state_st"))

    # The cache lives under the pipeline root; the gate and publish are never cached (see pipelines/settings.py).
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(out / "kfp"),
        raise_on_error=True,
        enable_caching=options.cache,
    )
    log_file = out / "pipeline.log"
    pipeline = build_training_pipeline(PipelineSettings(retries=0))
    figure = executor_figure(out / "kfp", arguments["gate_metric"])
    with _run_output(options.verbose, log_file, figure, display_names(pipeline)) as events:
        try:
            pipeline(**arguments)
        except RuntimeError as err:  # kfp.local's "task ... finished with status FAILURE"
            if events is None or events.failed is None:
                raise
            raise ArtifactError(
                f"pipeline stage {events.failed} failed:\n{events.failure_tail()}\n    full log: {log_file}"
            ) from err
    run_root = _latest_run(out / "kfp")

    model_name = arguments.get("model_name", "state_st")
    after = serving_record(str(repository), model_name)
    published = after.version if after and (before is None or after.version != before.version) else None
    pipeline_root = out / "kfp"
    metrics_task = task_output(pipeline_root, "evaluate-model", "executor_output.json").parent
    result = LocalRunResult(
        run_root=run_root,
        model_repository=repository,
        published_version=published,
        gate_decision=run_root / "promotion-gate" / "decision",
        metrics=metrics_from_metadata(_executor_metadata(metrics_task, "metrics")),
        report_html=_copy_report(run_root / "promotion-gate" / "report", out / "report.html"),
        log_file=None if options.verbose else log_file,
        gate_metric=str(arguments["gate_metric"]),
    )
    if options.query and published is not None:
        run_dir = task_output(pipeline_root, "train-model", "model")
        data_file = next((out / "data" / "synth").glob("*.h5ad"))
        query = _query(repository, model_name, out / "triton", run_dir, data_file)
        result = LocalRunResult(**{**result.__dict__, "query": query})
    return result


def _run_output(verbose: bool, log_file: Path, key_figure, names: dict[str, str]):  # noqa: ANN001, ANN202
    """One line per stage (`pipelines.local_progress`), or kfp.local's own output with `verbose`."""
    from pipelines.local_progress import stage_lines

    if verbose:
        return contextlib.nullcontext(None)
    return stage_lines(log_file, key_figure, names)


def _copy_report(report: Path, target: Path) -> Path:
    """The gate's comparison page, also at the top of the output folder where a user looks first."""
    if not report.is_file():
        raise ArtifactError(f"{report}: the promotion gate wrote no report; see {target.parent / 'pipeline.log'}")
    shutil.copyfile(report, target)
    return target


def _executor_metadata(task_dir: Path, output: str) -> dict:
    """Metadata kfp.local recorded for one output artifact of a task (its executor_output.json)."""
    import json

    executor_output = json.loads((task_dir / "executor_output.json").read_text())
    artifacts = executor_output.get("artifacts", {}).get(output, {}).get("artifacts", [])
    return artifacts[0].get("metadata", {}) if artifacts else {}


def predict_locally(
    model_run: str | Path,
    adata: str | Path,
    pipeline_root: str | Path,
    triton_url: str = "",
) -> Path:
    """Run the batch-inference pipeline through kfp.local; returns the predicted h5ad."""
    from kfp import local

    from pipelines.batch_inference import build_batch_inference_pipeline
    from pipelines.settings import PipelineSettings

    root = Path(pipeline_root).resolve()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    build_batch_inference_pipeline(PipelineSettings(retries=0))(
        model_uri=str(Path(model_run).resolve()),
        adata_uri=str(Path(adata).resolve()),
        triton_url=triton_url,
    )
    runs = sorted(root.glob("state-batch-infer-*"))
    if not runs or not (runs[-1] / "predict-cells" / "predictions").is_file():
        raise ArtifactError(f"{root}: the batch-inference run left no predictions; see the task log above")
    return runs[-1] / "predict-cells" / "predictions"


@dataclass(frozen=True)
class RetrainResult:
    run_root: Path  # kfp.local outputs of this run
    executed: frozenset[str]  # tasks this run executed (a cache hit or a skipped branch writes no folder)
    published_version: int | None  # None: nothing new is serving

    def task_dir(self, task: str) -> Path:
        """Output folder of a task this run executed (nested pipelines put theirs in sub-folders)."""
        found = sorted(p.parent for p in self.run_root.rglob("executor_output.json") if p.parent.name == task)
        if not found:
            raise ArtifactError(f"{self.run_root}: task {task} did not run here (ran: {sorted(self.executed)})")
        return found[0]


def retrain_locally(pipeline_root: str | Path, arguments: dict, cache: bool = True) -> RetrainResult:
    """One run of the retraining pipeline through kfp.local (what a recurring run starts on the cluster)."""
    from kfp import local

    from pipelines.retraining import PIPELINE_NAME, build_retraining_pipeline
    from pipelines.settings import PipelineSettings
    from state_core.pipeline_ops.publish_record import serving_record

    root = Path(pipeline_root).resolve()
    repository, model_name = str(arguments["model_repository"]), arguments.get("model_name", "state_st")
    before = serving_record(repository, model_name)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=cache,
    )
    build_retraining_pipeline(PipelineSettings(retries=0))(**arguments)
    runs = sorted(root.glob(f"{PIPELINE_NAME}-*"))
    if not runs:
        raise ArtifactError(f"{root}: kfp.local wrote no {PIPELINE_NAME} run folder")
    after = serving_record(repository, model_name)
    changed = after is not None and (before is None or after.version != before.version)
    executed = frozenset(p.parent.name for p in runs[-1].rglob("executor_output.json"))
    return RetrainResult(run_root=runs[-1], executed=executed, published_version=after.version if changed else None)
