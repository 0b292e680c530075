"""Baselines with the ST forward signature, and the `build_model(name, config)` registry.

Every model: forward(ctrl [B,S,D_in], pert_idx [B], batch_idx [B,S]|None, mask [B,S]|None,
cell_type_idx [B]|None) -> STOutput, and a class attribute `requires_training`. The statistical
baselines are fitted from plain tensors of statistics that the caller computes on the train split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from state_core.errors import ConfigError, Problem
from state_core.models.st import (
    LatentToGeneDecoder,
    StateTransitionModel,
    STConfig,
    STOutput,
    apply_output_activation,
    build_mlp,
)


def _expand(per_set: Tensor, ctrl: Tensor) -> Tensor:
    """[B, D] -> [B, S, D] with S taken from ctrl [B, S, D_in]."""
    return per_set[:, None, :].expand(-1, ctrl.shape[1], -1)


class ContextMean(nn.Module):
    """Predicts, for every cell of a set, the mean perturbed-cell target of the set's cell type.

    Unlike arc-state, control sets also get the statistic (never their own ground truth), so
    nothing leaks from the targets into predictions.
    """

    requires_training = False

    def __init__(self, config: STConfig):
        super().__init__()
        if not config.n_cell_types:
            raise ConfigError(
                "context_mean",
                Problem(
                    "n_cell_types", "is required by context_mean", "pass the number of cell types in the vocabulary"
                ),
            )
        self.register_buffer("latent_means", torch.zeros(config.n_cell_types, config.output_dim))  # [C, D_out]
        self.register_buffer("gene_means", torch.zeros(config.n_cell_types, config.gene_dim or 0))  # [C, G]
        self.has_genes = bool(config.gene_dim)

    def fit(self, latent_means: Tensor, gene_means: Tensor | None = None) -> ContextMean:
        """latent_means [C, D_out] (and gene_means [C, G]): mean target of perturbed cells per cell type."""
        self.latent_means = _checked(latent_means, self.latent_means, "latent_means")
        if gene_means is not None:
            self.gene_means = _checked(gene_means, self.gene_means, "gene_means")
        return self

    def forward(
        self,
        ctrl: Tensor,
        pert_idx: Tensor,
        batch_idx: Tensor | None = None,
        mask: Tensor | None = None,
        cell_type_idx: Tensor | None = None,
    ) -> STOutput:
        if cell_type_idx is None:
            raise ValueError("context_mean needs cell_type_idx [B]")
        latent = _expand(self.latent_means[cell_type_idx], ctrl)  # [B, S, D_out]
        genes = _expand(self.gene_means[cell_type_idx], ctrl) if self.has_genes else None  # [B, S, G]
        return STOutput(latent, genes)


def mean_shifts(pert_means: Tensor, pert_counts: Tensor, control_means: Tensor) -> Tensor:
    """Each perturbation's mean shift [n_pert, D]: (pert mean - control mean) averaged over the cell types
    where it was seen; zero where it never was. Inputs: [C, n_pert, D], [C, n_pert], [C, D]."""
    seen = (pert_counts > 0).to(pert_means.dtype)  # [C, n_pert]
    shifts = (pert_means - control_means[:, None, :]) * seen[..., None]  # [C, n_pert, D]
    return shifts.sum(0) / seen.sum(0).clamp_min(1.0)[:, None]


def shift_shrinkage_factors(
    shifts: Tensor, pert_counts: Tensor, pert_mean_vars: Tensor, control_mean_vars: Tensor
) -> Tensor:
    """Factor [n_pert, D] in [0, 1] that pulls each gene's mean shift towards 0 by its sampling noise.

    A group mean of ~100-200 cells carries noise of var/n in every gene, and most genes of most perturbations
    do not move, so the raw shift is mostly noise outside the responding genes. With the squared standard
    error v[p, d] of shift[p, d] and a prior variance tau2[d] = max(0, mean_p(shift^2) - mean_p(v)) of the true
    shifts of gene d (pooled over the seen perturbations), the posterior mean would be shift * f with
    f = tau2 / (tau2 + v); we use sqrt(f), the variance-matched ("constrained Bayes", Louis 1984) version, whose
    shifts vary across perturbations as much as the true ones (tau2) instead of f * tau2. Posterior means are
    over-shrunk as an ensemble: measured on trained runs, f gave the same pearson_delta as sqrt(f) but lost
    more of de_direction_match and de_sig_genes_recall (bench/RESULTS.md).
    Inputs: the `mean_shifts` [n_pert, D] of the group means, their cell counts [C, n_pert] (control zeroed),
    and the squared standard errors of the group means [C, n_pert, D] and of the control means [C, D].
    Perturbations seen in no cell type keep factor 1.
    """
    seen = (pert_counts > 0).to(shifts.dtype)  # [C, n_pert]
    n_seen = seen.sum(0)  # [n_pert]
    var = ((pert_mean_vars + control_mean_vars[:, None, :]) * seen[..., None]).sum(0)  # [n_pert, D]
    var = var / n_seen.clamp_min(1.0)[:, None] ** 2  # variance of a mean over the seen cell types
    used = n_seen > 0
    if not bool(used.any()):
        return torch.ones_like(shifts)
    tau2 = ((shifts[used] ** 2).mean(0) - var[used].mean(0)).clamp_min(0.0)  # [D]
    factor = (tau2 / (tau2 + var).clamp_min(1e-12)).sqrt()
    return torch.where(used[:, None], factor, torch.ones_like(factor))


@dataclass(frozen=True)
class ShiftBasis:
    """Gene programmes of the training shifts: project a shift s [.., D] with (s @ analysis.T) @ synthesis.

    Rows beyond `rank` are zero, so the model's buffers keep a fixed size (`st.SHIFT_BASIS_MAX_RANK` rows at most)."""

    analysis: Tensor  # [R, D]
    synthesis: Tensor  # [R, D]
    rank: int

    def project(self, shifts: Tensor) -> Tensor:
        return (shifts @ self.analysis.T) @ self.synthesis


def shift_programme_basis(group_shifts: Tensor, group_vars: Tensor, n_rows: int) -> ShiftBasis:
    """The directions in gene space that the training groups' mean shifts share above their sampling noise.

    Perturbations move co-regulated gene programmes, so the shifts of all (cell type, perturbation) training
    groups [n, D] are close to low rank, while their sampling noise (squared standard errors `group_vars`
    [n, D]) is spread over every gene. The noise is whitened first (a gene scale times a group scale,
    var[i, d] ~ r[i]^2 s[d]^2), then singular values above Gavish & Donoho's (2014) optimal hard threshold for
    unit noise, lambda*(beta) * sqrt(max(n, D)), are kept. The projection of a shift onto them, mapped back to
    gene units, keeps what the programmes explain and drops the noise outside them. An oblique projection in
    gene units: analysis = W / s, synthesis = W * s for the kept right singular vectors W of the whitened
    matrix. Computed in float64.
    """
    n, d = group_shifts.shape
    zeros = torch.zeros(n_rows, d, dtype=group_shifts.dtype)
    if n < 2:
        return ShiftBasis(zeros, zeros.clone(), 0)
    m, v = group_shifts.double(), group_vars.double().clamp_min(0.0)
    gene_sd = v.mean(0).sqrt()  # [D]
    floor = 1e-6 * float(gene_sd.max()) + 1e-12  # genes without noise (constant) must not blow up
    gene_sd = gene_sd.clamp_min(floor)
    group_scale = (v / gene_sd**2).mean(1).sqrt().clamp_min(1e-6)  # [n]
    whitened = m / group_scale[:, None] / gene_sd[None, :]
    _, sv, vh = torch.linalg.svd(whitened, full_matrices=False)
    small, large = min(n, d), max(n, d)
    beta = small / large
    lam = (2 * (beta + 1) + 8 * beta / (beta + 1 + (beta**2 + 14 * beta + 1) ** 0.5)) ** 0.5
    rank = min(int((sv > lam * large**0.5).sum()), n_rows)
    w = vh[:rank]  # [k, D]
    analysis, synthesis = zeros.clone(), zeros.clone()
    analysis[:rank] = (w / gene_sd).to(zeros.dtype)
    synthesis[:rank] = (w * gene_sd).to(zeros.dtype)
    return ShiftBasis(analysis, synthesis, rank)


def group_shifts(
    pert_means: Tensor, pert_counts: Tensor, control_means: Tensor, pert_mean_vars: Tensor, control_mean_vars: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean shift of every training (cell type, perturbation) group of >= 2 cells [n, D], and its squared
    standard error [n, D]. Inputs as `shift_shrinkage_factors` plus the means [C, n_pert, D], [C, D]."""
    used = pert_counts > 1  # [C, n_pert]
    shifts = (pert_means - control_means[:, None, :])[used]
    variances = (pert_mean_vars + control_mean_vars[:, None, :])[used]
    return shifts, variances


class PerturbMean(nn.Module):
    """Each control cell plus its perturbation's mean shift (pert mean - control mean, averaged over
    cell types). Shift and cells live in the same space (the model's input space); no gene output."""

    requires_training = False

    def __init__(self, config: STConfig):
        super().__init__()
        if config.input_dim != config.output_dim:
            raise ConfigError(
                "perturb_mean",
                Problem(
                    "output_dim",
                    f"{config.output_dim} != input_dim {config.input_dim}",
                    "perturb_mean adds a shift to the input cells; the spaces must match",
                ),
            )
        self.register_buffer("offsets", torch.zeros(config.n_perturbations, config.output_dim))  # [n_pert, D]
        self.output_activation = config.output_activation  # e.g. ReLU: log-expression stays >= 0

    def fit(self, pert_means: Tensor, pert_counts: Tensor, control_means: Tensor) -> PerturbMean:
        """pert_means [C, n_pert, D], pert_counts [C, n_pert] (cells seen), control_means [C, D].

        offset[p] = mean over cell types where p was seen of (pert_means[c, p] - control_means[c]);
        unseen perturbations (and the control, by construction) get a zero shift.
        """
        self.offsets = _checked(mean_shifts(pert_means, pert_counts, control_means), self.offsets, "offsets")
        return self

    def forward(
        self,
        ctrl: Tensor,
        pert_idx: Tensor,
        batch_idx: Tensor | None = None,
        mask: Tensor | None = None,
        cell_type_idx: Tensor | None = None,
    ) -> STOutput:
        shifted = ctrl + self.offsets[pert_idx][:, None, :]  # [B, S, D]
        return STOutput(apply_output_activation(shifted, self.output_activation), None)


class PerturbMeanCellType(PerturbMean):
    """perturb_mean with a per-cell-type response strength: ctrl + scale[c] * offset[p].

    Where the split shows a cell type some perturbations in training (fewshot), `scale[c]` is the least-squares
    factor between that cell type's observed shifts and the cross-cell-type offsets; cell types with no
    training perturbations (zeroshot) keep 1, i.e. plain perturb_mean.
    """

    def __init__(self, config: STConfig):
        super().__init__(config)
        if not config.n_cell_types:
            raise ConfigError(
                "perturb_mean_celltype",
                Problem(
                    "n_cell_types",
                    "is required by perturb_mean_celltype",
                    "pass the number of cell types in the vocabulary",
                ),
            )
        self.register_buffer("scales", torch.ones(config.n_cell_types))  # [C]

    def fit(self, pert_means: Tensor, pert_counts: Tensor, control_means: Tensor) -> PerturbMeanCellType:
        super().fit(pert_means, pert_counts, control_means)
        seen = pert_counts > 0  # [C, n_pert]
        shifts = pert_means - control_means[:, None, :]  # [C, n_pert, D]
        offsets = self.offsets.to(shifts.dtype)[None]  # [1, n_pert, D]
        num = ((shifts * offsets).sum(-1) * seen).sum(1)  # [C]
        den = ((offsets * offsets).sum(-1) * seen).sum(1)  # [C]
        self.scales = torch.where(den > 0, num / den.clamp_min(1e-12), torch.ones_like(den)).to(self.scales)
        return self

    def forward(
        self,
        ctrl: Tensor,
        pert_idx: Tensor,
        batch_idx: Tensor | None = None,
        mask: Tensor | None = None,
        cell_type_idx: Tensor | None = None,
    ) -> STOutput:
        if cell_type_idx is None:
            raise ValueError("perturb_mean_celltype needs cell_type_idx [B]")
        shift = self.scales[cell_type_idx][:, None] * self.offsets[pert_idx]  # [B, D]
        return STOutput(apply_output_activation(ctrl + shift[:, None, :], self.output_activation), None)


class EmbedSum(nn.Module):
    """Per-cell model with no set interaction: project_out(basal_encoder(ctrl) + pert_encoder(pert))."""

    requires_training = True

    def __init__(self, config: STConfig):
        super().__init__()
        c = config.validate()
        self.config = c
        self.register_buffer(
            "pert_features",
            torch.eye(c.n_perturbations)
            if c.pert_feature_dim is None
            else torch.zeros(c.n_perturbations, c.pert_feature_dim),
        )  # [n_pert, P]
        self.pert_encoder = build_mlp(
            c.pert_dim, c.hidden_dim, c.hidden_dim, c.n_encoder_layers, c.dropout, c.activation
        )
        self.basal_encoder = build_mlp(
            c.input_dim, c.hidden_dim, c.hidden_dim, c.n_encoder_layers, c.dropout, c.activation
        )
        self.project_out = build_mlp(
            c.hidden_dim, c.output_dim, c.hidden_dim, c.n_decoder_layers, c.dropout, c.activation
        )
        self.gene_decoder = (
            LatentToGeneDecoder(c.output_dim, c.gene_dim, c.decoder_hidden_dims, c.decoder_dropout, c.residual_decoder)
            if c.gene_dim
            else None
        )

    set_perturbation_features = StateTransitionModel.set_perturbation_features

    def forward(
        self,
        ctrl: Tensor,
        pert_idx: Tensor,
        batch_idx: Tensor | None = None,
        mask: Tensor | None = None,
        cell_type_idx: Tensor | None = None,
    ) -> STOutput:
        pert = self.pert_encoder(self.pert_features[pert_idx])[:, None, :]  # [B, 1, H]
        latent = self.project_out(self.basal_encoder(ctrl) + pert)  # [B, S, D_out]
        latent = apply_output_activation(latent, self.config.output_activation)
        genes = self.gene_decoder(latent) if self.gene_decoder is not None else None
        return STOutput(latent, genes)


def _checked(value: Tensor, like: Tensor, name: str) -> Tensor:
    if tuple(value.shape) != tuple(like.shape):
        raise ConfigError(
            "baseline statistics",
            Problem(
                name,
                f"shape {tuple(value.shape)}, expected {tuple(like.shape)}",
                "compute the statistic over the model's vocabulary",
            ),
        )
    return torch.as_tensor(value).detach().to(like)


MODEL_BUILDERS: dict[str, Callable[[STConfig], nn.Module]] = {
    "state": StateTransitionModel,
    "state_sm": StateTransitionModel,
    "state_lg": StateTransitionModel,
    "pertsets": StateTransitionModel,
    "context_mean": ContextMean,
    "perturb_mean": PerturbMean,
    "perturb_mean_celltype": PerturbMeanCellType,
    "embed_sum": EmbedSum,
}


def build_model(name: str, config: STConfig) -> nn.Module:
    """Build a model by name; check `model.requires_training` to know whether to fit or to train it."""
    if name not in MODEL_BUILDERS:
        raise ConfigError(
            "model", Problem("model", f"unknown model {name!r}", f"use one of {', '.join(MODEL_BUILDERS)}")
        )
    return MODEL_BUILDERS[name](config)
