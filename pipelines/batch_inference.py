"""Batch-inference pipeline: a trained run folder + an AnnData file -> predicted expression (h5ad).

model run (importer) ─┬─ predict: in process (triton_url empty) or through Triton gRPC (triton_url set)
AnnData URI ──────────┘
"""

# No `from __future__ import annotations`: KFP reads the parameter types from real annotations.

from kfp import dsl

from components.infer import predict_cells
from pipelines import resources as sizes
from pipelines.parameters import BATCH_INFERENCE, pipeline_function
from pipelines.resources import on_gpu
from pipelines.settings import PipelineSettings, step

PIPELINE_NAME = "state-batch-infer"


def build_batch_inference_pipeline(settings: PipelineSettings | None = None):
    """The batch-inference pipeline for one compile-time setting (image)."""
    settings = settings or PipelineSettings()

    def state_batch_infer(**p):
        model = dsl.importer(artifact_uri=p["model_uri"], artifact_class=dsl.Model, reimport=False)
        model.set_display_name("load model run")
        # One task for both modes: kfp.local cannot resolve GPU parameters inside a dsl.If branch, and a
        # Triton client needs no GPU, so gpu_count=0 (the default) with triton_url. Not pinned to the GPU
        # pool: with gpu_count=0 it runs on a CPU node. Not cached: the same URIs can hold new contents.
        predict = step(
            predict_cells(
                model=model.output,
                adata_uri=p["adata_uri"],
                triton_url=p["triton_url"],
                pert_col=p["pert_col"],
                cell_type_key=p["cell_type_key"],
                control_pert=p["control_pert"],
                embed_key=p["embed_key"],
                triton_model_name=p["triton_model_name"],
            ),
            settings,
            "predict",
            cache=False,
            preemptible=True,
            resources=sizes.PREDICT,
        )
        on_gpu(predict, p["gpu_resource"], p["gpu_count"])

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Predict perturbation responses for every cell of an AnnData "
        "file with a trained State Transition model.",
    )(
        pipeline_function(
            "Predict every (cell type, perturbation) group of an AnnData file.", BATCH_INFERENCE, state_batch_infer
        )
    )
