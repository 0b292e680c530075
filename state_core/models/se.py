"""The State Embedding (SE) model: pure math, no I/O.

A cell arrives as a "cell sentence": vocabulary ids of its top expressed genes `gene_ids [B, L]` (slot 0 is
the CLS slot, its id is ignored) and a per-slot count feature `count_feat [B, L]` (100 x expression weight).
Each gene id looks up a frozen per-gene vector (e.g. ESM2), L2-normalised and projected to width d; a
soft-binned count encoding is added; a post-norm transformer encoder without positions or mask runs over
[CLS, genes..., dataset token]; the L2-normalised CLS output (o) and a 10-d projection of the dataset-token
output form `X_state` [B, o + 10].

Parameter names follow the original checkpoints (`encoder.0`, `transformer_encoder.layers.{i}.qkv_proj`, ...)
so imported weights load without renaming. Fixed against the original: attention dropout is off in eval
mode, CLS and dataset tokens are concatenated (no in-place write, exports cleanly), the per-token head runs
only on the two tokens that are used, and the decoder input is built by one function (order
[gene, emb, rda, ds]) for training and decoding alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

N_BINS = 10  # soft expression bins of the count encoder
COUNT_HIDDEN = 512  # hidden width of the count encoder MLP
DS_DIM = 10  # width of the dataset embedding appended to X_state


@dataclass(frozen=True)
class SEConfig:
    token_dim: int  # E: width of one gene vector in the embedding table
    d_model: int = 512  # d
    d_hid: int = 1024  # h: feed-forward width
    nhead: int = 16
    nlayers: int = 8
    output_dim: int = 512  # o: cell-embedding width
    dropout: float = 0.1
    num_datasets: int = 1  # K: classes of the dataset classifier (training only)

    @property
    def x_state_dim(self) -> int:
        return self.output_dim + DS_DIM

    @property
    def decoder_width(self) -> int:
        return self.d_model + self.output_dim + 1 + DS_DIM

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass
class SEOutput:
    emb: torch.Tensor  # [B, o] unit-norm cell embedding
    ds: torch.Tensor  # [B, 10] dataset embedding
    ds_raw: torch.Tensor  # [B, o] per-token head output at the dataset token (classifier input)

    @property
    def x_state(self) -> torch.Tensor:
        return torch.cat([self.emb, self.ds], dim=-1)  # [B, o + 10]


class SkipBlock(nn.Module):
    """LayerNorm(x + MLP(x)) with hidden width 2n."""

    def __init__(self, n: int):
        super().__init__()
        self.intermediate_dense = nn.Linear(n, 2 * n)
        self.dense = nn.Linear(2 * n, n)
        self.layer_norm = nn.LayerNorm(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(x + self.dense(F.relu(self.intermediate_dense(x))))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer with fused QKV; dropout (attention included) only while training."""

    def __init__(self, d: int, nhead: int, d_hid: int, dropout: float):
        super().__init__()
        if d % nhead:
            raise ValueError(f"d_model={d} is not divisible by nhead={nhead}")
        self.nhead = nhead
        self.dropout = dropout
        self.qkv_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.linear1 = nn.Linear(d, d_hid)
        self.linear2 = nn.Linear(d_hid, d)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        qkv = self.qkv_proj(h).view(b, t, 3, self.nhead, d // self.nhead)  # [B, T, 3, H, d/H]
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, T, d/H]
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # [B, H, T, d/H]
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        h = self.norm1(h + F.dropout(self.attention(h), p, self.training))
        ff = self.linear2(F.dropout(F.gelu(self.linear1(h)), p, self.training))
        return self.norm2(h + F.dropout(ff, p, self.training))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: SEConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.nhead, cfg.d_hid, cfg.dropout) for _ in range(cfg.nlayers)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h)
        return h


class StateEmbeddingModel(nn.Module):
    """SE encoder plus its training heads (expression decoder, dataset classifier)."""

    def __init__(self, cfg: SEConfig, gene_table: torch.Tensor):
        super().__init__()
        if gene_table.ndim != 2 or gene_table.shape[1] != cfg.token_dim:
            raise ValueError(f"gene_table must be [V, {cfg.token_dim}], got {tuple(gene_table.shape)}")
        self.cfg = cfg
        e, d, o, w = cfg.token_dim, cfg.d_model, cfg.output_dim, cfg.decoder_width
        # Frozen, not a parameter and not in the state dict: it ships as its own safetensors file.
        self.register_buffer("gene_table", gene_table.float(), persistent=False)  # [V, E]
        self.cls_token = nn.Parameter(torch.randn(1, e))
        self.dataset_token = nn.Parameter(torch.randn(1, e))
        self.encoder = nn.Sequential(nn.Linear(e, d), nn.LayerNorm(d), nn.SiLU())
        self.count_encoder = nn.Sequential(nn.Linear(1, COUNT_HIDDEN), nn.LeakyReLU(), nn.Linear(COUNT_HIDDEN, N_BINS))
        self.bin_encoder = nn.Embedding(N_BINS, d)
        self.transformer_encoder = TransformerEncoder(cfg)
        self.decoder = nn.Sequential(SkipBlock(d), nn.Linear(d, o))
        self.dataset_embedder = nn.Linear(o, DS_DIM)
        self.binary_decoder = nn.Sequential(SkipBlock(w), SkipBlock(w), nn.Linear(w, 1))
        self.dataset_encoder = nn.Sequential(
            nn.Linear(o, d), nn.SiLU(), nn.LayerNorm(d), nn.Dropout(0.1), nn.Linear(d, cfg.num_datasets)
        )

    # --- encoder -------------------------------------------------------------------------------------
    def project_tokens(self, vectors: torch.Tensor) -> torch.Tensor:
        """Input projection of raw E-dim token vectors (normalised here for genes by the caller)."""
        return self.encoder(vectors) * math.sqrt(self.cfg.d_model)

    def token_inputs(self, gene_ids: torch.Tensor) -> torch.Tensor:
        """Projected tokens for [CLS, genes(slots 1..L-1), dataset token] -> [B, L+1, d]."""
        genes = F.normalize(self.gene_table[gene_ids[:, 1:]], dim=-1)  # [B, L-1, E]
        b = gene_ids.shape[0]
        cls = self.cls_token.expand(b, 1, -1)  # [B, 1, E]
        dst = self.dataset_token.expand(b, 1, -1)  # [B, 1, E]
        return self.project_tokens(torch.cat([cls, genes, dst], dim=1))  # [B, L+1, d]

    def count_embedding(self, count_feat: torch.Tensor) -> torch.Tensor:
        """Soft-binned encoding of the count feature; zero for the appended dataset token -> [B, L+1, d]."""
        probs = torch.softmax(self.count_encoder(count_feat.unsqueeze(-1)), dim=-1)  # [B, L, 10]
        emb = probs @ self.bin_encoder.weight  # [B, L, d]
        return F.pad(emb, (0, 0, 0, 1))  # [B, L+1, d]

    def encode_tokens(self, tokens: torch.Tensor, count_feat: torch.Tensor) -> SEOutput:
        """Run the encoder on projected tokens [B, L+1, d] (CLS first, dataset token last)."""
        h = self.transformer_encoder(tokens + self.count_embedding(count_feat))  # [B, L+1, d]
        ends = self.decoder(torch.stack([h[:, 0], h[:, -1]], dim=1))  # [B, 2, o]
        emb = F.normalize(ends[:, 0], dim=-1)  # [B, o]
        ds_raw = ends[:, 1]  # [B, o]
        return SEOutput(emb=emb, ds=self.dataset_embedder(ds_raw), ds_raw=ds_raw)

    def forward(self, gene_ids: torch.Tensor, count_feat: torch.Tensor) -> SEOutput:
        return self.encode_tokens(self.token_inputs(gene_ids), count_feat)

    # --- training heads ------------------------------------------------------------------------------
    def decoder_gene_embedding(self, gene_ids: torch.Tensor) -> torch.Tensor:
        """Gene side of the decoder: projection of the *un-normalised* vector, no sqrt(d) (as trained)."""
        return self.encoder(self.gene_table[gene_ids])  # [..., d]

    def decode(self, out: SEOutput, gene_emb: torch.Tensor, rda: torch.Tensor) -> torch.Tensor:
        """Predicted log expression [B, T] for per-cell genes `gene_emb` [B, T, d] and read depth `rda` [B]."""
        x = decoder_input(gene_emb, out.emb, rda, out.ds)  # [B, T, w]
        return self.binary_decoder(x).squeeze(-1)  # [B, T]

    def classify_dataset(self, out: SEOutput) -> torch.Tensor:
        return self.dataset_encoder(out.ds_raw)  # [B, K]


def decoder_input(gene_emb: torch.Tensor, emb: torch.Tensor, rda: torch.Tensor, ds: torch.Tensor) -> torch.Tensor:
    """The trained feature order [gene (d), emb (o), rda (1), ds (10)] -> [B, T, w].

    `gene_emb` is [B, T, d] (per-cell genes) or [T, d] (the same genes for every cell).
    """
    b = emb.shape[0]
    if gene_emb.ndim == 2:
        gene_emb = gene_emb.unsqueeze(0).expand(b, -1, -1)
    t = gene_emb.shape[1]
    cell = torch.cat([emb, rda.reshape(b, 1).to(emb.dtype), ds], dim=-1)  # [B, o + 11]
    return torch.cat([gene_emb, cell.unsqueeze(1).expand(b, t, -1)], dim=-1)


def rda_from_targets(targets: torch.Tensor) -> torch.Tensor:
    """Mean of a cell's non-zero targets [B, T] -> [B]; 0 for a cell with none (the original gave NaN)."""
    nonzero = (targets != 0).to(targets.dtype)
    return (targets * nonzero).sum(-1) / nonzero.sum(-1).clamp_min(1.0)


class SEEncoderGraph(nn.Module):
    """Inference-only encoder with the token projection precomputed: (gene_ids, count_feat) -> x_state.

    Projection and normalisation act per token, so a [V, d] table of projected genes plus two projected
    rows (CLS, dataset token) gives the same result as the full model in eval mode, without the E-wide
    matmul per token. This is the ONNX export boundary and the fast path of `emb transform`.
    """

    def __init__(self, model: StateEmbeddingModel):
        super().__init__()
        model = model.eval()
        with torch.no_grad():
            table = model.project_tokens(F.normalize(model.gene_table, dim=-1))  # [V, d]
            ends = model.project_tokens(torch.cat([model.cls_token, model.dataset_token]))  # [2, d]
        self.register_buffer("token_table", table.detach().clone())
        self.register_buffer("cls_row", ends[:1].detach().clone())  # [1, d]
        self.register_buffer("ds_row", ends[1:].detach().clone())  # [1, d]
        self.model = model

    def forward(self, gene_ids: torch.Tensor, count_feat: torch.Tensor) -> torch.Tensor:
        b = gene_ids.shape[0]
        genes = self.token_table[gene_ids[:, 1:]]  # [B, L-1, d]
        tokens = torch.cat([self.cls_row.expand(b, 1, -1), genes, self.ds_row.expand(b, 1, -1)], dim=1)
        return self.model.encode_tokens(tokens, count_feat).x_state  # [B, o + 10]
