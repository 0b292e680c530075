"""Compile-time settings and the per-task settings (image, resources, retries, caching) the pipelines apply.

Resources, retries and caching are set where a task is created, so the compiled YAML shows them plainly.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl

from components.image import STATE_IMAGE
from pipelines.resources import Resources, set_resources


@dataclass(frozen=True)
class PipelineSettings:
    """What is fixed when the YAML is compiled rather than chosen per run."""

    image: str = STATE_IMAGE
    train_timeout_s: int = 24 * 3600  # a stuck training pod is killed after this
    retries: int = 3  # per preemptible step; 0 for local runs, where a failure is a bug, not a preemption
    # A memory-backed /dev/shm for the GPU training task, which NCCL needs with several GPUs. A compile-time
    # choice because a KFP volume cannot depend on a run parameter (gpu_count); a multi-GPU run of a YAML
    # compiled without it stops at start with the fix (state_core.pipeline_ops.training).
    multi_gpu: bool = False


def step(
    task: dsl.PipelineTask,
    settings: PipelineSettings,
    name: str,
    *,
    cache: bool,
    resources: Resources | None,
    preemptible: bool = False,
) -> dsl.PipelineTask:
    """Image, display name, caching, resources and retries of one task.

    cache: pure steps (same inputs, same outputs) are reused by a rerun; every step that reads the data
    takes the data fingerprint as an input, so new data behind the same URI is never served from the cache;
    steps that read outside state (the serving repository) must always run. resources: None only for a task
    whose requests come from run parameters (set by the caller). preemptible: steps on spot nodes retry with
    backoff, and training resumes from its checkpoints.
    """
    task.set_container_image(settings.image).set_display_name(name).set_caching_options(cache)
    if resources is not None:
        set_resources(task, resources)
    if preemptible and settings.retries > 0:
        task.set_retry(
            num_retries=settings.retries,
            backoff_duration="60s",
            backoff_factor=2.0,
            backoff_max_duration="1800s",
        )
    return task
