"""Training pipeline: split -> embed -> train ST and a baseline -> evaluate both -> gate -> export -> publish.

experiment TOML ─ split ─┬─ embed ─┬─ train ST ─────── evaluate ─┐
                         │         └─ train baseline ─ evaluate ─┴─ promotion gate
                         │                                              │ promote?
                         └──────────────────────────────── export ONNX ─ publish to Triton repository
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl, kubernetes

from components.embed import embed_cells
from components.evaluate import evaluate_model
from components.export import export_onnx
from components.gate import promotion_gate
from components.publish import publish_model
from components.split import split_cells
from components.train import train_model
from pipelines.settings import DEFAULT_GPU_NODE_SELECTOR, PipelineSettings, on_gpu, step

PIPELINE_NAME = "state-train"


def build_training_pipeline(settings: PipelineSettings | None = None):
    """The training pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Train a State Transition model, gate it against a baseline "
        "and the serving model, and publish it to Triton.",
    )
    def state_train(
        experiment_toml: str,
        model_repository: str,
        model_name: str = "state_st",
        triton_backend: str = "onnxruntime",
        model_preset: str = "state_sm",
        baseline_preset: str = "context_mean",
        train_overrides: list = [],  # noqa: B006 - KFP reads parameter defaults as literals
        baseline_overrides: list = [],  # noqa: B006
        embed_method: str = "precomputed",
        num_hvgs: int = 2000,
        se_model_dir: str = "",
        se_layer: str = "",
        split_seed: int = 0,
        pert_col: str = "gene",
        cell_type_key: str = "cell_type",
        batch_col: str = "gem_group",
        control_pert: str = "non-targeting",
        gate_metric: str = "mse_delta",
        higher_is_better: bool = False,
        min_improvement: float = 0.0,
        gpu_resource: str = "nvidia.com/gpu",
        gpu_count: int = 1,
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
    ):
        """Train, evaluate, gate and publish a State Transition model.

        Args:
            experiment_toml: Experiment TOML (local path or gs:// URI) naming the datasets and the held-out cell types or perturbations.
            model_repository: Triton model repository (gs://bucket/models or a local folder) to publish into.
            model_name: Name of the model in the Triton repository.
            triton_backend: Triton backend of the published model - onnxruntime (GPU serving image) or python (CPU-only local server).
            model_preset: ST preset to train (state, state_sm, state_lg, pertsets).
            baseline_preset: Baseline the candidate must beat (context_mean, perturb_mean, embed_sum).
            train_overrides: Extra training key=value overrides of the ST model, e.g. ["training.max_steps=20000"].
            baseline_overrides: Extra training key=value overrides of the baseline.
            embed_method: How to make model inputs - precomputed (use obsm as given), hvg, or se.
            num_hvgs: Number of highly variable genes when embed_method is hvg.
            se_model_dir: SE run folder when embed_method is se.
            se_layer: Layer with raw counts for the SE model (e.g. counts); empty reads X.
            split_seed: Seed of the train/val/test split.
            pert_col: obs column holding the perturbation.
            cell_type_key: obs column holding the cell type.
            batch_col: obs column holding the batch (empty for none).
            control_pert: Label of control cells in pert_col.
            gate_metric: Metric the promotion gate compares (a cell-eval metric the baseline defines; pearson_delta is NaN for context_mean).
            higher_is_better: Whether a larger gate_metric is better.
            min_improvement: Margin by which the candidate must beat baseline and serving model.
            gpu_resource: Kubernetes GPU resource name of the training node.
            gpu_count: GPUs per training task.
            gpu_node_selector: Node selector of the GPU node pool, e.g. {"cloud.google.com/gke-accelerator": "nvidia-l4"}.
        """
        split = step(
            split_cells(
                experiment_toml=experiment_toml,
                seed=split_seed,
                pert_col=pert_col,
                cell_type_key=cell_type_key,
                batch_col=batch_col,
                control_pert=control_pert,
            ),
            settings,
            "split",
            cache=True,
        )
        embed = step(
            embed_cells(
                experiment_toml=experiment_toml,
                method=embed_method,
                num_hvgs=num_hvgs,
                se_model_dir=se_model_dir,
                se_layer=se_layer,
            ),
            settings,
            "embed",
            cache=True,
        ).after(split)

        trained = {}
        for role, preset, overrides in (
            ("candidate", model_preset, train_overrides),
            ("baseline", baseline_preset, baseline_overrides),
        ):
            train = step(
                train_model(
                    embedded=embed.outputs["embedded"],
                    split=split.outputs["split"],
                    model_preset=preset,
                    overrides=overrides,
                ),
                settings,
                f"train {role}",
                cache=True,
                preemptible=True,
            )
            kubernetes.set_timeout(train, settings.train_timeout_s)
            if (
                role == "candidate"
            ):  # baselines are a few means over the training cells; CPU is enough
                on_gpu(train, gpu_resource, gpu_count, gpu_node_selector)
            evaluate = step(
                evaluate_model(model=train.outputs["model"]),
                settings,
                f"evaluate {role}",
                cache=True,
                preemptible=True,
            )
            trained[role] = (train, evaluate)

        (candidate_train, candidate_eval), (_, baseline_eval) = (
            trained["candidate"],
            trained["baseline"],
        )
        gate = step(
            promotion_gate(
                candidate=candidate_eval.outputs["metrics"],
                baseline=baseline_eval.outputs["metrics"],
                model_repository=model_repository,
                model_name=model_name,
                metric=gate_metric,
                higher_is_better=higher_is_better,
                min_improvement=min_improvement,
            ),
            settings,
            "promotion gate",
            cache=False,
        )

        with dsl.If(gate.outputs["Output"] == True, name="promote"):
            export = step(
                export_onnx(model=candidate_train.outputs["model"]),
                settings,
                "export ONNX",
                cache=True,
                preemptible=True,
            )
            step(
                publish_model(
                    onnx_model=export.outputs["onnx_model"],
                    metrics=candidate_eval.outputs["metrics"],
                    model_repository=model_repository,
                    model_name=model_name,
                    experiment_toml=experiment_toml,
                    triton_backend=triton_backend,
                ),
                settings,
                "publish to Triton",
                cache=False,
            )

    return state_train
