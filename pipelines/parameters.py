"""The one table of pipeline parameters: name, type, default and the help text shown in the Kubeflow UI.

Training, retraining and batch inference pick their parameters from this table by name, so a parameter has
one type, one default and one description everywhere, and retraining passes every training parameter on
without a hand-copied list (a copied list once dropped the column names, so retrains on other datasets
silently used `gene`/`non-targeting`). `pipeline_function` turns a list of rows into the typed signature
and `Args:` docstring KFP reads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipelines.resources import DEFAULT_GPU_NODE_SELECTOR

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    default: Any
    help: str

    def with_default(self, default: Any, help: str) -> Param:
        """The same parameter with another default (batch inference: empty = as the model was trained)."""
        return replace(self, default=default, help=help)


_ROWS = [
    # --- data
    Param(
        "experiment_toml",
        str,
        REQUIRED,
        "Experiment TOML (local path or gs:// URI) naming the datasets and the held-out cell types or perturbations.",
    ),
    Param("pert_col", str, "gene", "obs column holding the perturbation."),
    Param("cell_type_key", str, "cell_type", "obs column holding the cell type."),
    Param("batch_col", str, "gem_group", "obs column holding the batch (empty for none)."),
    Param("control_pert", str, "non-targeting", "Label of control cells in pert_col."),
    Param("split_seed", int, 0, "Seed of the train/val/test split."),
    Param(
        "embed_method", str, "precomputed", "How to make model inputs - precomputed (use obsm as given), hvg, or se."
    ),
    Param("num_hvgs", int, 2000, "Number of highly variable genes when embed_method is hvg."),
    Param("se_model_dir", str, "", "SE run folder when embed_method is se."),
    Param("se_layer", str, "", "Layer with raw counts for the SE model (e.g. counts); empty reads X."),
    # --- models
    Param("model_preset", str, "state_sm", "ST preset to train (state, state_sm, state_lg, pertsets)."),
    Param(
        "baseline_preset",
        str,
        "context_mean",
        "Baseline the candidate must beat (context_mean, perturb_mean, embed_sum).",
    ),
    Param(
        "train_overrides",
        list,
        [],
        'Extra training key=value overrides of the ST model, e.g. ["training.max_steps=20000"].',
    ),
    Param("baseline_overrides", list, [], "Extra training key=value overrides of the baseline."),
    Param(
        "checkpoint_uri",
        str,
        "",
        "Durable folder (gs://... or a mounted PVC path) for training checkpoints, so a retried (preempted) "
        "training task resumes; empty keeps them inside the task only.",
    ),
    # --- gate and serving
    Param(
        "model_repository",
        str,
        REQUIRED,
        "Triton model repository (gs://bucket/models or a local folder) to publish into.",
    ),
    Param("model_name", str, "state_st", "Name of the model in the Triton repository."),
    Param(
        "triton_backend",
        str,
        "onnxruntime",
        "Triton backend of the published model - onnxruntime (GPU serving image) or python (CPU-only local server).",
    ),
    Param(
        "gate_metric",
        str,
        "mse_delta",
        "Metric the promotion gate compares (a cell-eval metric the baseline defines; pearson_delta is NaN for "
        "context_mean).",
    ),
    Param("higher_is_better", bool, False, "Whether a larger gate_metric is better."),
    Param("min_improvement", float, 0.0, "Margin by which the candidate must beat baseline and serving model."),
    Param(
        "triton_ready_url",
        str,
        "",
        "HTTP address of the Triton server that polls model_repository "
        "(e.g. http://state-triton.state-serving:8000); "
        "publish waits until it reports the new version ready. Empty: do not wait.",
    ),
    Param("force", bool, False, "Retrain even when the data is unchanged."),
    # --- batch inference
    Param(
        "model_uri",
        str,
        REQUIRED,
        "Run folder of a trained model (gs://... or a local path), as written by the training pipeline.",
    ),
    Param(
        "adata_uri",
        str,
        REQUIRED,
        "Input .h5ad (gs://... or a local path) with control cells and the perturbations to simulate.",
    ),
    Param("triton_url", str, "", "host:port of a Triton gRPC endpoint; empty runs the model inside the pipeline task."),
    Param("triton_model_name", str, "state_st", "Model name in Triton when triton_url is set."),
    Param("embed_key", str, "", "obsm key of the input features; empty uses the model's."),
    # --- cluster resources
    Param("gpu_resource", str, "nvidia.com/gpu", "Kubernetes GPU resource name of the training node."),
    Param("gpu_count", int, 1, "GPUs per training task (at most what one node of gpu_node_selector holds)."),
    Param(
        "gpu_node_selector",
        dict,
        DEFAULT_GPU_NODE_SELECTOR,
        'Node selector of the GPU node pool, e.g. {"cloud.google.com/gke-accelerator": "nvidia-l4"}.',
    ),
    Param("train_cpu", str, "4", "CPU request and limit of the candidate's training task."),
    Param("train_memory", str, "24G", "Memory request and limit of the candidate's training task."),
]
TABLE: dict[str, Param] = {p.name: p for p in _ROWS}

_DATA = [
    "experiment_toml",
    "pert_col",
    "cell_type_key",
    "batch_col",
    "control_pert",
    "split_seed",
    "embed_method",
    "num_hvgs",
    "se_model_dir",
    "se_layer",
]
_GPU = ["gpu_resource", "gpu_count", "gpu_node_selector"]

TRAINING: list[Param] = [
    TABLE[n]
    for n in [
        "experiment_toml",
        "model_repository",
        "model_name",
        "triton_backend",
        "model_preset",
        "baseline_preset",
        "train_overrides",
        "baseline_overrides",
        *_DATA[1:],
        "gate_metric",
        "higher_is_better",
        "min_improvement",
        "checkpoint_uri",
        "triton_ready_url",
        *_GPU,
        "train_cpu",
        "train_memory",
    ]
]
RETRAINING: list[Param] = [*TRAINING, TABLE["force"]]

_AS_TRAINED = "; empty uses the one the model was trained with."
BATCH_INFERENCE: list[Param] = [
    TABLE["model_uri"],
    TABLE["adata_uri"],
    TABLE["triton_url"],
    TABLE["triton_model_name"],
    TABLE["pert_col"].with_default("", "obs column of perturbations" + _AS_TRAINED),
    TABLE["cell_type_key"].with_default("", "obs column of cell types" + _AS_TRAINED),
    TABLE["control_pert"].with_default("", "Control label" + _AS_TRAINED),
    TABLE["embed_key"],
    TABLE["gpu_resource"],
    TABLE["gpu_count"].with_default(0, "GPUs for in-process prediction; 0 runs on a CPU node (and with triton_url)."),
]


def names(params: Sequence[Param]) -> list[str]:
    return [p.name for p in params]


def pipeline_function(summary: str, params: Sequence[Param], body: Callable[..., None]) -> Callable:
    """A function KFP can read as a pipeline: the signature and `Args:` docstring come from `params`,
    the body is called with every parameter by keyword."""
    signature = inspect.Signature(
        [
            inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type)
            for p in params
        ]
    )

    def pipeline(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(**bound.arguments)

    pipeline.__signature__ = signature  # inspect.signature (which KFP uses) reads this
    pipeline.__doc__ = summary + "\n\nArgs:\n" + "\n".join(f"    {p.name}: {p.help}" for p in params)
    pipeline.__name__ = body.__name__
    return pipeline
