"""Sizes of the tiny SE model used across the SE tests (E=32, d=32, 2 layers, L=64)."""

from __future__ import annotations

from state_core.models.se import SEConfig

TOKEN_DIM = 32
PAD_LENGTH = 64


def tiny_config(num_datasets: int = 2) -> SEConfig:
    return SEConfig(
        token_dim=TOKEN_DIM,
        d_model=32,
        d_hid=64,
        nhead=4,
        nlayers=2,
        output_dim=32,
        dropout=0.1,
        num_datasets=num_datasets,
    )
