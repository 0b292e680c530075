"""Training pipeline: fingerprint -> split -> embed -> train ST and a baseline -> evaluate both -> score the
serving model on the same test cells -> gate -> export -> publish.

experiment TOML ─ fingerprint ─ split ─ embed ─┬─ train ST ─────── evaluate ─┬─ serving model on the same cells ─┐
                                               └─ train baseline ─ evaluate ─┴──────────────────── promotion gate ┘
                                                                                                     │ promote?
                                                                         export ONNX ─ publish (wait until served)

The data fingerprint is an input of every step that reads the data (directly or through its artifacts),
so a cached step is reused only for the very same data.
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl, kubernetes

from components.compare import score_serving_model
from components.embed import embed_cells
from components.evaluate import evaluate_model
from components.export import export_onnx
from components.fingerprint import fingerprint_data
from components.gate import promotion_gate
from components.publish import publish_model
from components.split import split_cells
from components.train import train_model
from pipelines import resources as sizes
from pipelines.parameters import TRAINING, pipeline_function
from pipelines.resources import on_gpu
from pipelines.settings import PipelineSettings, step

PIPELINE_NAME = "state-train"


def add_training_tasks(settings: PipelineSettings, p: dict) -> None:
    """The tasks of one training run, from the pipeline parameters `p` (channels)."""
    fingerprint = step(
        fingerprint_data(experiment_toml=p["experiment_toml"]),
        settings,
        "data fingerprint",
        cache=False,
        resources=sizes.SMALL,
    )
    data_fingerprint = fingerprint.output
    split = step(
        split_cells(
            experiment_toml=p["experiment_toml"],
            data_fingerprint=data_fingerprint,
            seed=p["split_seed"],
            pert_col=p["pert_col"],
            cell_type_key=p["cell_type_key"],
            batch_col=p["batch_col"],
            control_pert=p["control_pert"],
        ),
        settings,
        "split",
        cache=True,
        resources=sizes.SPLIT,
    )
    embed = step(
        embed_cells(
            experiment_toml=p["experiment_toml"],
            data_fingerprint=data_fingerprint,
            method=p["embed_method"],
            num_hvgs=p["num_hvgs"],
            se_model_dir=p["se_model_dir"],
            se_layer=p["se_layer"],
        ),
        settings,
        "embed",
        cache=True,
        resources=sizes.EMBED,
    ).after(split)

    trained = {}
    for role, preset, overrides in (
        ("candidate", p["model_preset"], p["train_overrides"]),
        ("baseline", p["baseline_preset"], p["baseline_overrides"]),
    ):
        train = step(
            train_model(
                embedded=embed.outputs["embedded"],
                split=split.outputs["split"],
                data_fingerprint=data_fingerprint,
                model_preset=preset,
                overrides=overrides,
                checkpoint_uri=p["checkpoint_uri"],
            ),
            settings,
            f"train {role}",
            cache=True,
            preemptible=True,
            resources=None if role == "candidate" else sizes.BASELINE,
        )
        kubernetes.set_timeout(train, settings.train_timeout_s)
        if role == "candidate":  # baselines are a few means over the training cells; CPU is enough
            train.set_cpu_request(p["train_cpu"]).set_cpu_limit(p["train_cpu"])
            train.set_memory_request(p["train_memory"]).set_memory_limit(p["train_memory"])
            on_gpu(train, p["gpu_resource"], p["gpu_count"], p["gpu_node_selector"], shared_memory=settings.multi_gpu)
        evaluate = step(
            evaluate_model(model=train.outputs["model"], data_fingerprint=data_fingerprint),
            settings,
            f"evaluate {role}",
            cache=True,
            preemptible=True,
            resources=sizes.EVALUATE,
        )
        trained[role] = (train, evaluate)

    (candidate_train, candidate_eval), (_, baseline_eval) = trained["candidate"], trained["baseline"]
    serving = step(
        score_serving_model(
            candidate=candidate_train.outputs["model"],
            candidate_metrics=candidate_eval.outputs["metrics"],
            model_repository=p["model_repository"],
            model_name=p["model_name"],
        ),
        settings,
        "serving model on the same cells",
        cache=False,
        preemptible=True,
        resources=sizes.EVALUATE,
    )
    gate = step(
        promotion_gate(
            candidate=candidate_eval.outputs["metrics"],
            baseline=baseline_eval.outputs["metrics"],
            candidate_results=candidate_eval.outputs["results"],
            baseline_results=baseline_eval.outputs["results"],
            comparison=serving.outputs["comparison"],
            metric=p["gate_metric"],
            higher_is_better=p["higher_is_better"],
            min_improvement=p["min_improvement"],
        ),
        settings,
        "promotion gate",
        cache=False,
        resources=sizes.SMALL,
    )

    with dsl.If(gate.outputs["Output"] == True, name="promote"):  # noqa: E712 - a KFP condition, not Python
        export = step(
            export_onnx(model=candidate_train.outputs["model"], data_fingerprint=data_fingerprint),
            settings,
            "export ONNX",
            cache=True,
            preemptible=True,
            resources=sizes.EXPORT,
        )
        step(
            publish_model(
                onnx_model=export.outputs["onnx_model"],
                trained_model=candidate_train.outputs["model"],
                metrics=candidate_eval.outputs["metrics"],
                model_repository=p["model_repository"],
                model_name=p["model_name"],
                triton_backend=p["triton_backend"],
                triton_ready_url=p["triton_ready_url"],
            ),
            settings,
            "publish to Triton",
            cache=False,
            resources=sizes.PUBLISH,
        )


def build_training_pipeline(settings: PipelineSettings | None = None):
    """The training pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()

    def state_train(**p):
        add_training_tasks(settings, p)

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train a State Transition model, gate it against a baseline "
        "and the serving model, and publish it to Triton.",
    )(pipeline_function("Train, evaluate, gate and publish a State Transition model.", TRAINING, state_train))
