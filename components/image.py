"""The container image every component runs in (built from images/train.Dockerfile).

This is only the compile-time default: `state pipeline compile --image REF` replaces it on every task.
"""

STATE_IMAGE = "ghcr.io/state-core/state-train:0.1.0"
