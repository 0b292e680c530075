"""Build the model of a run from the preset, the data's dimensions and `model.kwargs`; fit baselines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from state_core.config.train_config import TrainConfig
from state_core.data.vocab import gene_target_key
from state_core.models.baselines import build_model
from state_core.models.losses import LossConfig
from state_core.models.presets import DataDims, resolve_model_config
from state_core.train.baseline_stats import context_means, train_group_means
from state_core.train.data_setup import RunData


@dataclass
class RunModel:
    model: nn.Module
    kind: str
    config: dict[str, Any]  # {"preset", "model": STConfig dict, "loss": LossConfig dict} -> model.json
    loss: LossConfig
    requires_training: bool


def data_dims(data: RunData) -> DataDims:
    vocab = data.vocab
    return DataDims(
        input_dim=data.input_dim,
        output_dim=data.output_dim,
        n_perturbations=len(vocab.perturbations),
        pert_feature_dim=None if data.pert_features is None else int(data.pert_features.shape[1]),
        n_batches=len(vocab.batches) if vocab.batch_col else 0,
        n_cell_types=len(vocab.cell_types),
        gene_dim=data.gene_dim,
        output_space=vocab.output_space,
        embed_key=None if vocab.embed_key == "X" else vocab.embed_key,
    )


def _fit_baseline(model: nn.Module, kind: str, data: RunData) -> None:
    vocab = data.vocab
    stats = train_group_means(data.manifest, vocab, vocab.embed_key)
    ctrl = vocab.control_index
    if kind == "context_mean":
        gene_key = gene_target_key(vocab.embed_key, vocab.output_space)
        gene = None
        if getattr(model, "has_genes", False) and gene_key is not None:
            gene = torch.from_numpy(context_means(train_group_means(data.manifest, vocab, gene_key), ctrl))
        model.fit(torch.from_numpy(context_means(stats, ctrl)), gene)
    elif kind == "perturb_mean":
        means = stats.means().astype("float32")  # [C, P, D]
        counts = torch.from_numpy(stats.counts.copy())
        counts[:, ctrl] = 0  # the control's shift is zero by definition
        model.fit(torch.from_numpy(means), counts, torch.from_numpy(means[:, ctrl]))


def build_run_model(cfg: TrainConfig, data: RunData) -> RunModel:
    kind = cfg.model.name
    resolved = resolve_model_config(kind, data_dims(data), dict(cfg.model.kwargs), source="model.kwargs")
    model = build_model(kind, resolved.model)
    if data.pert_features is not None and hasattr(model, "set_perturbation_features"):
        model.set_perturbation_features(torch.from_numpy(data.pert_features))
    requires_training = bool(getattr(model, "requires_training", True))
    if not requires_training:
        _fit_baseline(model, kind, data)
    return RunModel(model=model, kind=kind, config=resolved.to_dict(), loss=resolved.loss,
                    requires_training=requires_training)
