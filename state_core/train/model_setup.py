"""Build the model of a run from its resolved config (preset + data dims + `model.kwargs`); fit baselines."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from state_core.config.train_config import TrainConfig
from state_core.data.vocab import gene_target_key
from state_core.models.baselines import (
    ShiftBasis,
    build_model,
    group_shifts,
    mean_shifts,
    shift_programme_basis,
    shift_shrinkage_factors,
)
from state_core.models.losses import LossConfig
from state_core.models.presets import DataDims, ResolvedModelConfig
from state_core.models.st import SHIFT_BASIS_MAX_RANK, STConfig
from state_core.train.baseline_stats import GroupMeans, context_means, train_group_means
from state_core.train.data_setup import RunData, RunInputs

log = logging.getLogger(__name__)


def describe_sizes(c) -> str:  # noqa: ANN001 - STConfig
    """One line with the sizes a run actually builds (after preset, width scaling and overrides)."""
    heads = f"{c.n_heads}x{c.head_dim or c.hidden_dim // max(c.n_heads, 1)}"
    return (
        f"{c.backbone} hidden {c.hidden_dim}, {c.n_layers} layers, heads {heads}, ffn {c.ffn_dim}, "
        f"S={c.cell_set_len}, residual {c.residual}, dropout {c.dropout}, code_norm {c.code_norm}, "
        f"pert_shift {c.pert_shift}"
    )


@dataclass
class RunModel:
    model: nn.Module
    kind: str
    config: dict[str, Any]  # {"preset", "model": STConfig dict, "loss": LossConfig dict} -> model.json
    loss: LossConfig
    requires_training: bool


def data_dims(data: RunInputs) -> DataDims:
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
    ctrl = vocab.control_index
    if kind == "context_mean":
        stats = train_group_means(data.manifest, vocab, vocab.embed_key)
        gene_key = gene_target_key(vocab.embed_key, vocab.output_space)
        gene = None
        if getattr(model, "has_genes", False) and gene_key is not None:
            gene = torch.from_numpy(context_means(train_group_means(data.manifest, vocab, gene_key), ctrl))
        model.fit(torch.from_numpy(context_means(stats, ctrl)), gene)
    elif kind in ("perturb_mean", "perturb_mean_celltype"):
        model.fit(*_shift_statistics(data, train_group_means(data.manifest, vocab, vocab.embed_key)))


def _shift_statistics(data: RunData, stats: GroupMeans) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (cell type, perturbation) training means [C, P, D], cell counts [C, P] (control zeroed: its
    shift is zero by definition) and control means [C, D], in the model's input space."""
    control = data.vocab.control_index
    means = stats.means().astype("float32")
    counts = torch.from_numpy(stats.counts.copy())
    counts[:, control] = 0
    return torch.from_numpy(means), counts, torch.from_numpy(means[:, control])


@dataclass
class ShiftTableStart:
    """What a new run's shift table starts from, and its eval-mode denoising (None where not asked for)."""

    shifts: torch.Tensor  # [n_pert, D]: each perturbation's training mean shift
    factors: torch.Tensor | None  # [n_pert, D] shrinkage factors
    basis: ShiftBasis | None  # programme basis (shift_lowrank)


def _initial_shifts(data: RunData, model_config: STConfig) -> ShiftTableStart:
    """The shift table's start and, with `shift_shrinkage`, its eval-mode factors; with `shift_lowrank` the
    programme basis too, the factors then being those of what lies outside it."""
    vocab = data.vocab
    shrink = model_config.shift_shrinkage
    stats = train_group_means(data.manifest, vocab, vocab.embed_key, squares=shrink)
    means, counts, control_means = _shift_statistics(data, stats)
    shifts = mean_shifts(means, counts, control_means)
    if not shrink:
        return ShiftTableStart(shifts, None, None)
    mean_vars = torch.from_numpy(stats.mean_variances().astype("float32"))
    control_vars = mean_vars[:, vocab.control_index]
    basis, outside = None, shifts
    if model_config.shift_lowrank:
        groups, group_vars = group_shifts(means, counts, control_means, mean_vars, control_vars)
        basis = shift_programme_basis(groups, group_vars, min(SHIFT_BASIS_MAX_RANK, shifts.shape[1]))
        outside = shifts - basis.project(shifts)
    factors = shift_shrinkage_factors(outside, counts, mean_vars, control_vars)
    return ShiftTableStart(shifts, factors, basis)


def build_run_model(cfg: TrainConfig, data: RunData, resolved: ResolvedModelConfig) -> RunModel:
    """The model of `resolved` (from `preflight`, resolved once against `data_dims(data)`)."""
    kind = cfg.model.name
    model = build_model(kind, resolved.model)
    if data.pert_features is not None and hasattr(model, "set_perturbation_features"):
        model.set_perturbation_features(torch.from_numpy(data.pert_features))
    requires_training = bool(getattr(model, "requires_training", True))
    if not requires_training:
        _fit_baseline(model, kind, data)
    elif getattr(model, "pert_shift", None) is not None:
        start = _initial_shifts(data, resolved.model)
        model.init_pert_shift(start.shifts)  # a resumed run loads its own table (and factors) after this
        if start.basis is not None:
            model.set_shift_basis(start.basis.analysis, start.basis.synthesis)
            log.info("shift table: eval-mode programme basis of rank %d", start.basis.rank)
        if start.factors is not None:
            model.set_shift_factors(start.factors)
            log.info("shift table: eval-mode shrinkage factors, mean %.3f", float(start.factors.mean()))
    log.info("model %s: %s", kind, describe_sizes(resolved.model))
    return RunModel(
        model=model, kind=kind, config=resolved.to_dict(), loss=resolved.loss, requires_training=requires_training
    )
