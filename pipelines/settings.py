"""Compile-time settings and the per-task settings (image, GPU, retries, caching) the pipelines apply.

Resources, retries and caching are set where a task is created, so the compiled YAML shows them plainly.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes

from components.image import STATE_IMAGE

GPU_TOLERATION_KEY = "nvidia.com/gpu"  # GKE taints GPU node pools with this key
DEFAULT_GPU_NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-l4"}


@dataclass(frozen=True)
class PipelineSettings:
    """What is fixed when the YAML is compiled rather than chosen per run."""

    image: str = STATE_IMAGE
    train_timeout_s: int = 24 * 3600  # a stuck training pod is killed after this
    retries: int = 3  # per preemptible step; 0 for local runs, where a failure is a bug, not a preemption


def step(
    task: dsl.PipelineTask,
    settings: PipelineSettings,
    name: str,
    *,
    cache: bool,
    preemptible: bool = False,
) -> dsl.PipelineTask:
    """Image, display name, caching and retries of one task.

    cache: pure steps (same inputs, same outputs) are reused by a rerun; steps that read outside state
    (the serving repository) must always run. preemptible: steps on spot nodes retry with backoff, and
    training resumes from its last checkpoint.
    """
    task.set_container_image(settings.image).set_display_name(name).set_caching_options(
        cache
    )
    if preemptible and settings.retries > 0:
        task.set_retry(
            num_retries=settings.retries,
            backoff_duration="60s",
            backoff_factor=2.0,
            backoff_max_duration="1800s",
        )
    return task


def on_gpu(
    task: dsl.PipelineTask, gpu_resource: str, gpu_count: int, gpu_node_selector: dict
) -> dsl.PipelineTask:
    """Request `gpu_count` of `gpu_resource`, schedule on the chosen GPU node pool and tolerate its taint."""
    task.set_accelerator_type(gpu_resource).set_accelerator_limit(gpu_count)
    task.set_cpu_request("4").set_memory_request("32G").set_memory_limit("64G")
    kubernetes.add_node_selector_json(task, gpu_node_selector)
    kubernetes.add_toleration(
        task, key=GPU_TOLERATION_KEY, operator="Exists", effect="NoSchedule"
    )
    return task
