"""What each task asks the cluster for: CPU/memory requests and limits, GPUs, node pool, shared memory.

Sizes are per kind of work, so the compiled YAML shows every task's requests plainly and a Kubernetes
scheduler can place them; the candidate's training task takes its CPU, memory and GPUs from run parameters,
because they follow the model size and dataset chosen per run.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl, kubernetes

GPU_TOLERATION_KEY = "nvidia.com/gpu"  # GKE taints GPU node pools with this key
# g2-standard-8 (one L4, 8 vCPU, 32 GB) is the default node: the default GPU request (1), CPU (4) and memory
# (24G) of the training task fit it with room for the node's system pods.
DEFAULT_GPU_NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
SHM_SIZE = "16Gi"  # /dev/shm for NCCL and DataLoader workers when a task uses several GPUs


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# Sized for the work, not the data: the small steps read labels or metrics only; split reads obs columns;
# embed, evaluate, export and batch prediction hold one dataset or model in memory.
SMALL = Resources("250m", "1", "512M", "2G")  # fingerprint, freshness check, gate
SPLIT = Resources("1", "2", "4G", "8G")
EMBED = Resources("2", "4", "16G", "32G")
BASELINE = Resources("2", "4", "8G", "16G")
EVALUATE = Resources("2", "4", "16G", "32G")
EXPORT = Resources("2", "4", "8G", "16G")
PUBLISH = Resources("500m", "2", "2G", "4G")
PREDICT = Resources("4", "8", "16G", "32G")


def set_resources(task: dsl.PipelineTask, resources: Resources) -> dsl.PipelineTask:
    return (
        task.set_cpu_request(resources.cpu_request)
        .set_cpu_limit(resources.cpu_limit)
        .set_memory_request(resources.memory_request)
        .set_memory_limit(resources.memory_limit)
    )


def on_gpu(
    task: dsl.PipelineTask,
    gpu_resource,
    gpu_count,
    gpu_node_selector=None,  # noqa: ANN001 - channels
    shared_memory: bool = False,
) -> dsl.PipelineTask:
    """Request `gpu_count` of `gpu_resource`; with `shared_memory` a /dev/shm emptyDir (several GPUs talk
    through it; the compile-time `--multi-gpu` choice).

    gpu_node_selector: schedule on that node pool and tolerate its taint. Batch inference passes None, so
    with gpu_count=0 it runs on an ordinary CPU node; GKE adds the GPU toleration itself to pods that
    request GPUs.
    """
    task.set_accelerator_type(gpu_resource).set_accelerator_limit(gpu_count)
    if shared_memory:
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
        )
    if gpu_node_selector is not None:
        kubernetes.add_node_selector_json(task, gpu_node_selector)
        kubernetes.add_toleration(task, key=GPU_TOLERATION_KEY, operator="Exists", effect="NoSchedule")
    return task
