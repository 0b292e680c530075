"""Scheduled retraining: run the training pipeline only when the experiment's data changed.

A recurring run (`state pipeline schedule --cron`, or manifests/recurring-run.yaml) starts this pipeline;
the freshness check compares a fingerprint of the data with the one recorded next to the serving model, so
a nightly schedule costs one small pod on nights without new data.

    freshness check ── changed? ── training pipeline (split ... gate ... publish)
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl

from components.freshness import data_changed
from pipelines.settings import DEFAULT_GPU_NODE_SELECTOR, PipelineSettings, step
from pipelines.training import build_training_pipeline

PIPELINE_NAME = "state-retrain"


def build_retraining_pipeline(settings: PipelineSettings | None = None):
    """The scheduled-retraining pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()
    training = build_training_pipeline(settings)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Retrain and republish the State Transition model when its "
        "training data has changed (for recurring runs).",
    )
    def state_retrain(
        experiment_toml: str,
        model_repository: str,
        model_name: str = "state_st",
        model_preset: str = "state_sm",
        baseline_preset: str = "context_mean",
        train_overrides: list = [],  # noqa: B006 - KFP reads parameter defaults as literals
        baseline_overrides: list = [],  # noqa: B006
        gate_metric: str = "mse_delta",
        higher_is_better: bool = False,
        min_improvement: float = 0.0,
        force: bool = False,
        gpu_resource: str = "nvidia.com/gpu",
        gpu_count: int = 1,
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
    ):
        """Retrain when the data changed since the serving model was trained.

        Args:
            experiment_toml: Experiment TOML (local path or gs:// URI) naming the datasets and held-out groups.
            model_repository: Triton model repository (gs://bucket/models or a local folder).
            model_name: Name of the model in the Triton repository.
            model_preset: ST preset to train (state, state_sm, state_lg, pertsets).
            baseline_preset: Baseline the candidate must beat (context_mean, perturb_mean, embed_sum).
            train_overrides: Extra training key=value overrides of the ST model, e.g. ["training.max_steps=20000"].
            baseline_overrides: Extra training key=value overrides of the baseline.
            gate_metric: Metric the promotion gate compares (a cell-eval metric the baseline defines; pearson_delta is NaN for context_mean).
            higher_is_better: Whether a larger gate_metric is better.
            min_improvement: Margin by which the candidate must beat baseline and serving model.
            force: Retrain even when the data is unchanged.
            gpu_resource: Kubernetes GPU resource name of the training node.
            gpu_count: GPUs per training task.
            gpu_node_selector: Node selector of the GPU node pool.
        """
        check = step(
            data_changed(
                experiment_toml=experiment_toml,
                model_repository=model_repository,
                model_name=model_name,
                force=force,
            ),
            settings,
            "data changed?",
            cache=False,
        )
        with dsl.If(check.output == True, name="retrain"):
            training(
                experiment_toml=experiment_toml,
                model_repository=model_repository,
                model_name=model_name,
                model_preset=model_preset,
                baseline_preset=baseline_preset,
                train_overrides=train_overrides,
                baseline_overrides=baseline_overrides,
                gate_metric=gate_metric,
                higher_is_better=higher_is_better,
                min_improvement=min_improvement,
                gpu_resource=gpu_resource,
                gpu_count=gpu_count,
                gpu_node_selector=gpu_node_selector,
            )

    return state_retrain
