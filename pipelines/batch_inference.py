"""Batch-inference pipeline: a trained run folder + an AnnData file -> predicted expression (h5ad).

model run (importer) ─┬─ predict: in process (triton_url empty) or through Triton gRPC (triton_url set)
AnnData URI ──────────┘
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl

from components.infer import predict_cells
from pipelines.settings import DEFAULT_GPU_NODE_SELECTOR, PipelineSettings, on_gpu, step

PIPELINE_NAME = "state-batch-infer"


def build_batch_inference_pipeline(settings: PipelineSettings | None = None):
    """The batch-inference pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Predict perturbation responses for every cell of an AnnData "
        "file with a trained State Transition model.",
    )
    def state_batch_infer(
        model_uri: str,
        adata_uri: str,
        triton_url: str = "",
        triton_model_name: str = "state_st",
        pert_col: str = "",
        cell_type_key: str = "",
        control_pert: str = "",
        embed_key: str = "",
        gpu_resource: str = "nvidia.com/gpu",
        gpu_count: int = 1,
        gpu_node_selector: dict = DEFAULT_GPU_NODE_SELECTOR,
    ):
        """Predict every (cell type, perturbation) group of an AnnData file.

        Args:
            model_uri: Run folder of a trained model (gs://... or a local path), as written by the training pipeline.
            adata_uri: Input .h5ad (gs://... or a local path) with control cells and the perturbations to simulate.
            triton_url: host:port of a Triton gRPC endpoint; empty runs the model inside the pipeline task.
            triton_model_name: Model name in Triton when triton_url is set.
            pert_col: obs column of perturbations; empty uses the column the model was trained with.
            cell_type_key: obs column of cell types; empty uses the model's.
            control_pert: Control label; empty uses the model's.
            embed_key: obsm key of the input features; empty uses the model's.
            gpu_resource: Kubernetes GPU resource name when predicting in process.
            gpu_count: GPUs for in-process prediction (0 when triton_url is set).
            gpu_node_selector: Node selector of the GPU node pool.
        """
        model = dsl.importer(
            artifact_uri=model_uri, artifact_class=dsl.Model, reimport=False
        )
        model.set_display_name("load model run")
        common = {
            "model": model.output,
            "adata_uri": adata_uri,
            "pert_col": pert_col,
            "cell_type_key": cell_type_key,
            "control_pert": control_pert,
            "embed_key": embed_key,
            "triton_model_name": triton_model_name,
        }

        # One task for both modes: kfp.local cannot resolve GPU parameters inside a dsl.If branch, and a
        # Triton client needs no GPU, so set gpu_count=0 with triton_url. Not cached: the same URIs can hold
        # new contents from one run to the next.
        predict = step(
            predict_cells(triton_url=triton_url, **common),
            settings,
            "predict",
            cache=False,
            preemptible=True,
        )
        on_gpu(predict, gpu_resource, gpu_count, gpu_node_selector)

    return state_batch_infer
