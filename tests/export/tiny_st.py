"""A tiny stand-in with the ST forward signature, for export and serving tests.

It has what makes export hard in the real model: a perturbation table buffer, attention with a
key-padding mask, an optional batch embedding and an optional gene decoder.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class TinyOutput(NamedTuple):
    latent: torch.Tensor
    genes: torch.Tensor | None


class TinyST(nn.Module):
    def __init__(
        self,
        input_dim: int = 6,
        output_dim: int = 5,
        num_perturbations: int = 4,
        num_genes: int | None = 7,
        num_batches: int | None = None,
        hidden: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        torch.manual_seed(seed)
        self.register_buffer("pert_table", torch.randn(num_perturbations, 3))  # [P, 3]
        self.pert_encoder = nn.Linear(3, hidden)
        self.ctrl_encoder = nn.Linear(input_dim, hidden)
        self.batch_embedding = nn.Embedding(num_batches, hidden) if num_batches else None
        self.block = nn.TransformerEncoderLayer(hidden, 2, 32, dropout=0.0, batch_first=True)
        self.latent_head = nn.Linear(hidden, output_dim)
        self.gene_head = nn.Linear(output_dim, num_genes) if num_genes else None

    def forward(self, ctrl, pert_idx, batch_idx=None, mask=None, cell_type_idx=None) -> TinyOutput:
        h = self.ctrl_encoder(ctrl) + self.pert_encoder(self.pert_table[pert_idx])[:, None, :]  # [B, S, H]
        if self.batch_embedding is not None and batch_idx is not None:
            h = h + self.batch_embedding(batch_idx)
        h = self.block(h, src_key_padding_mask=None if mask is None else ~mask)
        latent = self.latent_head(h)  # [B, S, D_out]
        genes = self.gene_head(latent) if self.gene_head is not None else None
        return TinyOutput(latent, genes)
