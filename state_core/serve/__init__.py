"""Triton serving: config.pbtxt from tensor specs, repository publishing, local tritonserver, gRPC client."""

from state_core.serve.client import (
    ClientSettings,
    TritonSTClient,
    served_metadata,
    triton_predictor,
)
from state_core.serve.local_server import LocalTriton, start_server, stop_server
from state_core.serve.repository import PublishedVersion, publish_model, rollback_to
from state_core.serve.triton_config import (
    TritonModelConfig,
    local_config,
    production_config,
    render_config,
)

__all__ = [
    "ClientSettings",
    "LocalTriton",
    "PublishedVersion",
    "TritonModelConfig",
    "TritonSTClient",
    "local_config",
    "production_config",
    "publish_model",
    "render_config",
    "rollback_to",
    "served_metadata",
    "start_server",
    "stop_server",
    "triton_predictor",
]
