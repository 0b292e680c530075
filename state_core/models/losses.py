"""Set-level losses: one value per set, comparing a predicted set of cells with an observed one.

Every loss takes pred [B,S,D], target [B,S',D] and optional masks [B,S] / [B,S'] (True = real cell)
and returns [B]. Training averages over sets (nan-mean), as arc-state did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from state_core.errors import ConfigError, Problem

SetLossFn = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]


def _set_weights(x: Tensor, mask: Tensor | None) -> Tensor:
    """Uniform weights over the real cells of each set: [B, S], each row sums to 1."""
    if mask is None:
        return torch.full(x.shape[:2], 1.0 / x.shape[1], dtype=x.dtype, device=x.device)
    w = mask.to(x.dtype)
    return w / w.sum(dim=1, keepdim=True).clamp_min(1.0)


def _pairwise_distances(a: Tensor, b: Tensor, same: bool) -> Tensor:
    """Euclidean distances [B, S, S'] with a bounded gradient everywhere.

    The squared distance comes from the matmul expansion; clamping it away from zero keeps the
    gradient of sqrt finite, and distances of a set to itself get an exact zero diagonal.
    """
    d2 = (a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)  # [B, S, S']
    d = torch.sqrt(d2.clamp_min(1e-12))
    if same:
        off_diagonal = 1.0 - torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
        d = d * off_diagonal
    return d


def energy_distance(x: Tensor, y: Tensor, x_mask: Tensor | None = None, y_mask: Tensor | None = None) -> Tensor:
    """mean_ij |x_i - y_j| - 1/2 mean_ij |x_i - x_j| - 1/2 mean_ij |y_i - y_j| per set -> [B].

    Half the classical energy distance; equals geomloss SamplesLoss("energy") with uniform weights.
    """
    # centre on the target mean: distances are unchanged and the matmul expansion loses less precision
    centre = (y * _set_weights(y, y_mask)[..., None]).sum(1, keepdim=True).detach()  # [B, 1, D]
    x, y = x - centre, y - centre
    wx, wy = _set_weights(x, x_mask), _set_weights(y, y_mask)  # [B, S], [B, S']

    def weighted_mean(d: Tensor, wa: Tensor, wb: Tensor) -> Tensor:
        return torch.einsum("bi,bij,bj->b", wa, d, wb)  # [B]

    xy = weighted_mean(_pairwise_distances(x, y, same=False), wx, wy)
    xx = weighted_mean(_pairwise_distances(x, x, same=True), wx, wx)
    yy = weighted_mean(_pairwise_distances(y, y, same=True), wy, wy)
    return xy - 0.5 * xx - 0.5 * yy


def mse(x: Tensor, y: Tensor, x_mask: Tensor | None = None, y_mask: Tensor | None = None) -> Tensor:
    """Per-set mean squared error over real cells and features -> [B]. Cells are paired by position."""
    mask = x_mask if x_mask is not None else y_mask
    sq = (x - y).pow(2).mean(-1)  # [B, S]
    return (sq * _set_weights(x, mask)).sum(1)


def set_mean_mse(x: Tensor, y: Tensor, x_mask: Tensor | None = None, y_mask: Tensor | None = None) -> Tensor:
    """Pseudobulk term: mean over features of (set mean of x - set mean of y)^2 -> [B].

    The energy distance sees a shift of the whole set only at second order when per-cell noise is large
    (its gradient for the mean is about |shift| / |noise|), so on noisy high-dimensional expression it
    learns the mean shift slowly; this term gives the shift a first-order gradient.
    """
    mx = (x * _set_weights(x, x_mask)[..., None]).sum(1)  # [B, D]
    my = (y * _set_weights(y, y_mask)[..., None]).sum(1)  # [B, D]
    return (mx - my).pow(2).mean(-1)


def _fill_padding(x: Tensor, mask: Tensor | None, weights: Tensor) -> Tensor:
    if mask is None:
        return x.contiguous()
    mean = (x * weights[..., None]).sum(1, keepdim=True)  # [B, 1, D]
    return torch.where(mask[..., None], x, mean).contiguous()


def geomloss_loss(kind: str, blur: float, p: int = 2) -> SetLossFn:
    """A geomloss SamplesLoss ("sinkhorn", "energy", "gaussian", "laplacian") in batched mode -> [B]."""
    from geomloss import SamplesLoss  # imported lazily: only training needs it

    samples_loss = SamplesLoss(kind, p=p, blur=blur) if kind == "sinkhorn" else SamplesLoss(kind, blur=blur)

    def loss(x: Tensor, y: Tensor, x_mask: Tensor | None = None, y_mask: Tensor | None = None) -> Tensor:
        wx, wy = _set_weights(x, x_mask), _set_weights(y, y_mask)  # [B, S], [B, S']
        # padding gets weight 0; it is also moved onto its set's mean so that it cannot widen
        # geomloss's diameter estimate (which sets the annealing schedule)
        return samples_loss(wx, _fill_padding(x, x_mask, wx), wy, _fill_padding(y, y_mask, wy))  # [B]

    return loss


@dataclass(frozen=True)
class SetLoss:
    """A weighted sum of named set-level terms; `parts` gives each term for logging."""

    name: str
    terms: tuple[tuple[str, float, SetLossFn], ...]

    def parts(
        self, pred: Tensor, target: Tensor, pred_mask: Tensor | None = None, target_mask: Tensor | None = None
    ) -> dict[str, Tensor]:
        return {term: fn(pred, target, pred_mask, target_mask) for term, _, fn in self.terms}

    def __call__(
        self, pred: Tensor, target: Tensor, pred_mask: Tensor | None = None, target_mask: Tensor | None = None
    ) -> Tensor:
        total = None
        for _, weight, fn in self.terms:
            value = weight * fn(pred, target, pred_mask, target_mask)
            total = value if total is None else total + value
        return total  # [B]


LOSS_NAMES = ("energy", "sinkhorn", "se", "mse", "gaussian", "laplacian")


def make_loss(name: str, blur: float = 0.05, sinkhorn_weight: float = 0.01, energy_weight: float = 1.0) -> SetLoss:
    """Build a set loss by name. "se" = sinkhorn_weight * sinkhorn + energy_weight * energy.

    "gaussian"/"laplacian" are kernel MMDs with `blur` as the kernel scale (arc-state's
    `distributional_loss` option).
    """
    if name == "energy":
        return SetLoss(name, (("energy", 1.0, energy_distance),))
    if name == "sinkhorn":
        return SetLoss(name, (("sinkhorn", 1.0, geomloss_loss("sinkhorn", blur)),))
    if name == "se":
        return SetLoss(
            name,
            (
                ("sinkhorn", sinkhorn_weight, geomloss_loss("sinkhorn", blur)),
                ("energy", energy_weight, energy_distance),
            ),
        )
    if name == "mse":
        return SetLoss(name, (("mse", 1.0, mse),))
    if name in ("gaussian", "laplacian"):
        return SetLoss(name, ((name, 1.0, geomloss_loss(name, blur)),))
    raise ConfigError("loss", Problem("loss", f"unknown loss {name!r}", f"use one of {', '.join(LOSS_NAMES)}"))


@dataclass(frozen=True)
class LossConfig:
    """Loss settings from the original `model.kwargs` (loss, blur, weights, decoder weight)."""

    loss: str = "energy"
    blur: float = 0.05
    sinkhorn_weight: float = 0.01
    energy_weight: float = 1.0
    decoder_weight: float = 1.0  # weight of the gene-decoder loss; `decoder_loss_weight` is an alias
    regularization: float = 0.0  # weight of mean |pred - ctrl| (raw input space)
    detach_decoder: bool = False  # stop decoder-loss gradients into the transition model
    mean_weight: float = 0.0  # weight of the pseudobulk term `set_mean_mse` beside the set loss

    ALIASES = {"decoder_loss_weight": "decoder_weight"}

    def build(self) -> SetLoss:
        loss = make_loss(self.loss, self.blur, self.sinkhorn_weight, self.energy_weight)
        if self.mean_weight > 0:
            loss = SetLoss(loss.name, (*loss.terms, ("mean", self.mean_weight, set_mean_mse)))
        return loss

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} | set(cls.ALIASES)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "loss config") -> LossConfig:
        problems = [
            Problem(k, "unknown loss key", f"use one of {', '.join(sorted(cls.keys()))}")
            for k in sorted(set(data) - cls.keys())
        ]
        values = {cls.ALIASES.get(k, k): v for k, v in data.items() if k in cls.keys()}
        if (
            "decoder_weight" in data
            and "decoder_loss_weight" in data
            and data["decoder_weight"] != data["decoder_loss_weight"]
        ):
            problems.append(
                Problem(
                    "decoder_loss_weight",
                    "conflicts with decoder_weight (they are the same setting)",
                    "set only one of them",
                )
            )
        if values.get("loss", "energy") not in LOSS_NAMES:
            problems.append(Problem("loss", f"unknown loss {values['loss']!r}", f"use one of {', '.join(LOSS_NAMES)}"))
        if problems:
            raise ConfigError(source, problems)
        return cls(**values)
