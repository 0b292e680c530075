"""The State Transition (ST) model: a set-to-set map from control cells to perturbed cells.

A set holds S control ("basal") cells of one cell type and one perturbation. Each cell's features
and the perturbation's feature vector are encoded to H, added, passed through a non-causal set
transformer (no positions), and projected to the output space. See reference spec section 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from state_core.errors import ConfigError, Problem
from state_core.models.set_transformer import BACKBONE_KINDS, RMSNorm, SetTransformer

OUTPUT_SPACES = ("gene", "all", "embedding")
OUTPUT_ACTIVATIONS = ("none", "relu", "softplus")
ACTIVATIONS = ("relu", "leakyrelu", "elu", "selu", "gelu")
RESIDUAL_SPACES = ("input", "hidden")
SHIFT_BASIS_MAX_RANK = 128  # rows of the programme-basis buffers (shift_lowrank); a higher rank is cut


@dataclass(frozen=True)
class STConfig:
    """Everything needed to build an ST model (and the baselines that share its dimensions).

    Residual rule (`predict_residual`, then `residual_space`):
      - "input": latent = ctrl + project_out(h), for inputs in the output space (input_dim == output_dim).
        Each control cell is moved by a predicted change, so per-cell variation survives to the output, and
        the last layer starts at zero so an untrained model is the identity. New runs use it whenever the
        spaces match: with "hidden", a gene-space model must rebuild every cell through an H-wide bottleneck,
        and under a distribution loss it learned to make its spread from dropout noise, collapsing to about
        one output per set in eval mode (pearson_delta ~0).
      - "hidden": latent = project_out(h + basal_code), arc-state's rule for gene/embedding spaces;
      - None: the rule of model files written before `residual_space` existed ("hidden" for gene/embedding,
        "input" for all), so imported arc-state checkpoints and older runs predict what they did.
    arc-state applied a D -> D/8 -> D bottleneck after the add with no skip for output_space "all";
    `legacy_all_bottleneck` reproduces that, only for imported checkpoints.
    The output nonlinearity is explicit (`output_activation`), never inferred from the embedding key.
    """

    input_dim: int
    output_dim: int
    n_perturbations: int
    hidden_dim: int = 696
    pert_feature_dim: int | None = None  # None -> one-hot identity table, width n_perturbations
    n_batches: int | None = None  # None -> no batch encoder
    n_cell_types: int | None = None  # used by the context_mean baseline only
    backbone: str = "llama"
    n_layers: int = 8
    n_heads: int = 12
    head_dim: int | None = None  # llama: None = hidden_dim / n_heads
    ffn_dim: int = 2784
    backbone_dropout: float = 0.0
    norm_eps: float | None = None  # None -> 1e-6 (llama) / 1e-5 (gpt2)
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    activation: str = "gelu"
    dropout: float = 0.1
    use_basal_projection: bool = True
    predict_residual: bool = True
    residual_space: str | None = None  # input | hidden | None (legacy rule, see above)
    # Normalise the perturbation and basal codes (RMSNorm each) before they are added: with raw codes the
    # basal code of log-expression input was ~15x the norm of the perturbation code at initialisation.
    code_norm: bool = False
    # A learned per-perturbation shift in the output space, added to every cell ("input" residual only); new
    # runs start it at the training split's mean shift of each perturbation (what perturb_mean predicts), so
    # the transformer learns the cell-type- and cell-specific remainder instead of the whole effect from zero.
    pert_shift: bool = False
    # In eval mode, scale the table gene by gene by the empirical-Bayes factors of the training group means
    # (`shift_shrinkage_factors`, a buffer set when the run is built): training fits each training group's
    # mean, sampling noise included, and that noise travels to the cell types where the perturbation is held
    # out. Training itself sees the plain table: a shrunk, fixed start scored worse (the gain and transformer
    # learn their way back towards the noisy means).
    shift_shrinkage: bool = False
    # With shift_shrinkage: first project the table onto the gene programmes that the training groups' shifts
    # share above their noise (`shift_programme_basis`, buffers set when the run is built), then shrink only
    # what lies outside them (a knockdown of the target gene survives, isolated noise does not). A
    # perturbation's effect in a held-out cell type is then read through the programmes it moves, estimated
    # from every training group instead of its own few hundred cells.
    shift_lowrank: bool = False
    train_shift: bool = True  # false: the table stays at the training mean shifts
    # Remove the set mean from the transformer's change to the cells, so a set's mean shift comes from the
    # table (x gain) alone and the transformer shapes each cell around it. Measured: the transformer's part
    # of the mean shift of held-out groups was uncorrelated with the truth (it fits each training group's
    # residual noise), while adding up to 1/3 of the norm of the real effect. Opt-in: it cost overlap_at_N.
    centred_residual: bool = False
    # In eval mode, bound the transformer's set-mean change gene by gene to `mean_change_cap` x the magnitude
    # of the set's table shift (x gain), so it can strengthen or weaken the table's effect but never reverse
    # it; each cell's deviation from the set mean is kept, so the spread survives. Measured: the set-mean
    # change of held-out groups has a sign at chance and flips genes where the shrunk table is near 0.
    # Training is unchanged. None: off.
    mean_change_cap: float | None = None
    # Scale the shift gene by gene by a gain read from the set's control cells (1 + Linear(mean basal code)),
    # started at 1: a perturbation's mean effect differs between cell types mostly in strength per gene, and
    # the gain learned from a cell type's other perturbations carries over to its held-out ones.
    context_gain: bool = False
    # Learning-rate multiplier of the shift table and the context gain: they are per-perturbation / per-gene
    # statistics that Adam at the transformer's lr (1e-4) moves by at most ~0.1 in 1000 steps.
    shift_lr_scale: float = 1.0
    legacy_all_bottleneck: bool = False
    output_space: str = "all"
    output_activation: str = "none"
    gene_dim: int | None = None  # None -> no gene decoder (only built when gene targets exist)
    decoder_hidden_dims: tuple[int, ...] = (1024, 1024, 512)
    decoder_dropout: float = 0.1
    residual_decoder: bool = False
    cell_set_len: int = 256

    @property
    def residual(self) -> str:
        """The residual rule in force: "none", "input" or "hidden"."""
        if not self.predict_residual:
            return "none"
        if self.residual_space is not None:
            return self.residual_space
        return "input" if self.output_space == "all" else "hidden"

    @property
    def pert_dim(self) -> int:
        return self.n_perturbations if self.pert_feature_dim is None else self.pert_feature_dim

    def problems(self) -> list[Problem]:
        """Every inconsistency in this config (empty when valid)."""
        out: list[Problem] = []
        # options that work on the shift table, where they are switched away from their defaults
        table_options = [
            key
            for key, on in (
                ("shift_shrinkage", self.shift_shrinkage),
                ("shift_lowrank", self.shift_lowrank),
                ("train_shift", not self.train_shift),
                ("centred_residual", self.centred_residual),
                ("mean_change_cap", self.mean_change_cap is not None),
            )
            if on
        ]
        for key in (
            "input_dim",
            "output_dim",
            "n_perturbations",
            "hidden_dim",
            "n_layers",
            "n_heads",
            "ffn_dim",
            "n_encoder_layers",
            "n_decoder_layers",
            "cell_set_len",
        ):
            if getattr(self, key) < 1:
                out.append(Problem(key, f"must be >= 1, got {getattr(self, key)}"))
        choices = {
            "backbone": BACKBONE_KINDS,
            "output_space": OUTPUT_SPACES,
            "output_activation": OUTPUT_ACTIVATIONS,
            "activation": ACTIVATIONS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                out.append(Problem(key, f"{getattr(self, key)!r} is not allowed", f"use one of {', '.join(allowed)}"))
        if self.head_dim is not None and (
            self.head_dim < 1 or (self.backbone == "gpt2" and self.head_dim * self.n_heads != self.hidden_dim)
        ):
            out.append(
                Problem(
                    "head_dim",
                    f"{self.head_dim} is not allowed with backbone {self.backbone}",
                    "use head_dim >= 1 (llama) or head_dim * n_heads == hidden_dim (gpt2)",
                )
            )
        if self.head_dim is None and self.n_heads >= 1 and self.hidden_dim % self.n_heads:
            out.append(
                Problem(
                    "hidden_dim",
                    f"{self.hidden_dim} is not divisible by n_heads={self.n_heads}",
                    "pick a hidden_dim that is a multiple of the number of heads",
                )
            )
        if self.residual_space not in (None, *RESIDUAL_SPACES):
            out.append(
                Problem(
                    "residual_space",
                    f"{self.residual_space!r} is not allowed",
                    f"use one of {', '.join(RESIDUAL_SPACES)}",
                )
            )
        elif self.pert_shift and self.residual != "input":
            out.append(
                Problem(
                    "pert_shift",
                    "needs residual_space=input (the shift is added to the input cells)",
                    "set pert_shift=false or residual_space=input",
                )
            )
        elif table_options and not self.pert_shift:
            out.append(
                Problem(
                    table_options[0],
                    "works on the perturbation shift table, so it needs pert_shift=true",
                    f"set pert_shift=true, or drop {', '.join(table_options)} from model.kwargs",
                )
            )
        elif self.shift_lowrank and not self.shift_shrinkage:
            out.append(
                Problem(
                    "shift_lowrank",
                    "is a rule of the eval-mode shrinkage, so it needs shift_shrinkage=true",
                    "set shift_shrinkage=true or shift_lowrank=false",
                )
            )
        elif self.context_gain and not self.pert_shift:
            out.append(
                Problem(
                    "context_gain",
                    "scales the perturbation shift, so it needs pert_shift=true",
                    "set context_gain=false or pert_shift=true",
                )
            )
        elif self.residual == "input" and self.input_dim != self.output_dim:
            out.append(
                Problem(
                    "residual_space",
                    f"'input' adds the input cells to the output, but "
                    f"input_dim={self.input_dim} != output_dim={self.output_dim}",
                    "use residual_space=hidden, predict_residual=false or matching input/output spaces",
                )
            )
        if self.mean_change_cap is not None and not self.mean_change_cap >= 0:
            out.append(
                Problem("mean_change_cap", f"must be >= 0 or null, got {self.mean_change_cap}", "e.g. 0.5 (or null)")
            )
        if not self.shift_lr_scale > 0:
            out.append(Problem("shift_lr_scale", f"must be > 0, got {self.shift_lr_scale}", "e.g. 10 (or 1)"))
        for key in ("pert_feature_dim", "n_batches", "n_cell_types", "gene_dim"):
            value = getattr(self, key)
            if value is not None and value < 1:
                out.append(Problem(key, f"must be >= 1 or null, got {value}"))
        return out

    def validate(self, source: str = "STConfig") -> STConfig:
        found = self.problems()
        if found:
            raise ConfigError(source, found)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoder_hidden_dims"] = list(self.decoder_hidden_dims)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model config") -> STConfig:
        """Build from a plain dict (e.g. model.json); unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                source,
                [Problem(k, "unknown key", f"remove it; known keys: {', '.join(sorted(known))}") for k in unknown],
            )
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ConfigError(source, [Problem(k, "required key is missing") for k in missing])
        values = dict(data)
        if "decoder_hidden_dims" in values:
            values["decoder_hidden_dims"] = tuple(int(v) for v in values["decoder_hidden_dims"])
        return cls(**values).validate(source)


class STOutput(NamedTuple):
    latent: Tensor  # [B, S, D_out]
    genes: Tensor | None  # [B, S, G] or None without a gene decoder


def make_activation(name: str) -> nn.Module:
    table = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU, "gelu": nn.GELU}
    return table[name]()


def build_mlp(d_in: int, d_out: int, hidden: int, n_layers: int, dropout: float, activation: str) -> nn.Sequential:
    """arc-state's MLP: Linear, then (act, dropout, Linear) repeated; no norm, nothing after the last Linear.

    Indices match arc-state's `build_mlp` (Linear at 0, 3, 6, ...) so checkpoints import by name.
    """
    if n_layers == 1:
        return nn.Sequential(nn.Linear(d_in, d_out))
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), make_activation(activation), nn.Dropout(dropout)]
    for _ in range(n_layers - 2):
        layers += [nn.Linear(hidden, hidden), make_activation(activation), nn.Dropout(dropout)]
    layers.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*layers)


class LatentToGeneDecoder(nn.Module):
    """Latent -> genes: (Linear, LayerNorm, GELU, Dropout) per hidden width, then Linear and ReLU."""

    def __init__(
        self, latent_dim: int, gene_dim: int, hidden_dims: tuple[int, ...], dropout: float = 0.1, residual: bool = False
    ):
        super().__init__()
        self.residual = residual
        widths = [latent_dim, *hidden_dims]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.LayerNorm(b), nn.GELU(), nn.Dropout(dropout))
            for a, b in zip(widths[:-1], widths[1:])
        )
        self.out = nn.Linear(widths[-1], gene_dim)

    def forward(self, z: Tensor) -> Tensor:
        h = z
        for i, block in enumerate(self.blocks):
            y = block(h)
            # residual variant (arc-state's): odd blocks add the output of the even block before them
            h = y + h if self.residual and i % 2 == 1 else y
        return torch.relu(self.out(h))


class StateTransitionModel(nn.Module):
    """ST: forward(ctrl [B,S,D_in], pert_idx [B], batch_idx [B,S]|None, mask [B,S]|None) -> STOutput."""

    requires_training = True

    def __init__(self, config: STConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        # one row of perturbation features per perturbation; a buffer so it travels with the weights
        self.register_buffer(
            "pert_features",
            torch.eye(c.n_perturbations)
            if c.pert_feature_dim is None
            else torch.zeros(c.n_perturbations, c.pert_feature_dim),
        )  # [n_pert, P]
        self.pert_encoder = build_mlp(
            c.pert_dim, c.hidden_dim, c.hidden_dim, c.n_encoder_layers, c.dropout, c.activation
        )
        self.basal_encoder = (
            build_mlp(c.input_dim, c.hidden_dim, c.hidden_dim, c.n_encoder_layers, c.dropout, c.activation)
            if c.use_basal_projection
            else nn.Linear(c.input_dim, c.hidden_dim)
        )
        self.batch_encoder = nn.Embedding(c.n_batches, c.hidden_dim) if c.n_batches else None
        self.pert_norm = RMSNorm(c.hidden_dim) if c.code_norm else None
        self.basal_norm = RMSNorm(c.hidden_dim) if c.code_norm else None
        self.pert_shift = (
            nn.Parameter(torch.zeros(c.n_perturbations, c.output_dim), requires_grad=c.train_shift)
            if c.pert_shift
            else None
        )
        self.shift_factors: Tensor | None
        self.register_buffer(
            "shift_factors", torch.ones(c.n_perturbations, c.output_dim) if c.pert_shift and c.shift_shrinkage else None
        )  # [n_pert, D_out]
        basis_shape = (min(SHIFT_BASIS_MAX_RANK, c.output_dim), c.output_dim)
        lowrank = c.pert_shift and c.shift_shrinkage and c.shift_lowrank
        self.shift_basis_in: Tensor | None
        self.shift_basis_out: Tensor | None
        self.register_buffer("shift_basis_in", torch.zeros(basis_shape) if lowrank else None)  # [R, D_out]
        self.register_buffer("shift_basis_out", torch.zeros(basis_shape) if lowrank else None)  # [R, D_out]
        self.context_gain = nn.Linear(c.hidden_dim, c.output_dim) if c.context_gain else None
        if self.context_gain is not None:
            nn.init.zeros_(self.context_gain.weight)  # gain 1 at the start: the plain shift
            nn.init.zeros_(self.context_gain.bias)
        self.transformer = SetTransformer(
            c.backbone, c.hidden_dim, c.n_layers, c.n_heads, c.ffn_dim, c.backbone_dropout, c.norm_eps, c.head_dim
        )
        self.project_out = build_mlp(
            c.hidden_dim, c.output_dim, c.hidden_dim, c.n_decoder_layers, c.dropout, c.activation
        )
        self.final_down_then_up = (
            nn.Sequential(
                nn.Linear(c.output_dim, c.output_dim // 8), nn.GELU(), nn.Linear(c.output_dim // 8, c.output_dim)
            )
            if c.legacy_all_bottleneck and c.output_space == "all" and c.residual == "input"
            else None
        )
        if c.residual == "input" and c.residual_space is not None:
            # start at the identity map (predict the control cells); training learns the change
            nn.init.zeros_(self.project_out[-1].weight)
            nn.init.zeros_(self.project_out[-1].bias)
        self.gene_decoder = (
            LatentToGeneDecoder(c.output_dim, c.gene_dim, c.decoder_hidden_dims, c.decoder_dropout, c.residual_decoder)
            if c.gene_dim
            else None
        )

    def lr_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """Trainable parameters grouped by learning-rate multiplier (the shift table and gain at shift_lr_scale)."""
        fast = [
            p
            for p in (self.pert_shift, *(self.context_gain.parameters() if self.context_gain else ()))
            if p is not None
        ]
        fast_ids = {id(p) for p in fast}
        rest = [p for p in self.parameters() if id(p) not in fast_ids]
        groups = [(rest, 1.0), (fast, self.config.shift_lr_scale)]
        return [(ps, scale) for ps, scale in groups if any(p.requires_grad for p in ps)]

    def set_perturbation_features(self, features: Tensor) -> None:
        """Replace the feature table (e.g. gene embeddings); shape must be [n_perturbations, P]."""
        expected = tuple(self.pert_features.shape)
        if tuple(features.shape) != expected:
            raise ConfigError(
                "perturbation features",
                Problem(
                    "shape",
                    f"got {tuple(features.shape)}, the model expects {expected}",
                    "provide one vector per perturbation of width pert_feature_dim",
                ),
            )
        self.pert_features = features.detach().to(self.pert_features)

    def init_pert_shift(self, shifts: Tensor) -> None:
        """Start the learned shift table at `shifts` [n_perturbations, D_out] (e.g. training mean shifts)."""
        if self.pert_shift is None:
            raise ConfigError(
                "pert_shift", Problem("pert_shift", "this model has no shift table", "set pert_shift=true")
            )
        if tuple(shifts.shape) != tuple(self.pert_shift.shape):
            raise ConfigError(
                "pert_shift",
                Problem(
                    "shape",
                    f"got {tuple(shifts.shape)}, expected {tuple(self.pert_shift.shape)}",
                    "one shift per perturbation",
                ),
            )
        with torch.no_grad():
            self.pert_shift.copy_(shifts.to(self.pert_shift))

    def set_shift_factors(self, factors: Tensor) -> None:
        """The eval-mode factors of the shift table [n_perturbations, D_out] (see `shift_shrinkage`)."""
        if self.shift_factors is None or tuple(factors.shape) != tuple(self.shift_factors.shape):
            raise ValueError(f"shift factors {tuple(factors.shape)} do not match this model (shift_shrinkage)")
        self.shift_factors.copy_(factors.to(self.shift_factors))

    def set_shift_basis(self, analysis: Tensor, synthesis: Tensor) -> None:
        """The eval-mode programme basis of the shift table, two [R, D_out] matrices (see `shift_lowrank`)."""
        if self.shift_basis_in is None or tuple(analysis.shape) != tuple(self.shift_basis_in.shape):
            raise ValueError(f"shift basis {tuple(analysis.shape)} does not match this model (shift_lowrank)")
        self.shift_basis_in.copy_(analysis.to(self.shift_basis_in))
        self.shift_basis_out.copy_(synthesis.to(self.shift_basis_out))

    def eval_shift(self, pert_idx: Tensor) -> Tensor:
        """The table rows [B, D_out] that eval mode adds: projected on the programme basis (shift_lowrank), the
        rest scaled by the shrinkage factors; the plain rows in training."""
        shift = self.pert_shift[pert_idx]  # [B, D_out]
        if self.shift_factors is None or self.training:
            return shift
        factors = self.shift_factors[pert_idx]
        if self.shift_basis_in is None:
            return shift * factors
        programmes = (shift @ self.shift_basis_in.T) @ self.shift_basis_out
        return programmes + (shift - programmes) * factors

    def encode(self, ctrl: Tensor, pert_idx: Tensor, batch_idx: Tensor | None) -> tuple[Tensor, Tensor]:
        """Token inputs x [B,S,H] and the encoded basal c [B,S,H]."""
        pert = self.pert_encoder(self.pert_features[pert_idx])  # [B, H]; same for every cell of a set
        basal = self.basal_encoder(ctrl)  # [B, S, H]
        if self.pert_norm is not None:
            pert, basal = self.pert_norm(pert), self.basal_norm(basal)
        x = basal + pert[:, None, :]  # [B, S, H]
        if self.batch_encoder is not None:
            if batch_idx is None:
                raise ValueError("this model has a batch encoder: pass batch_idx [B, S]")
            x = x + self.batch_encoder(batch_idx)  # [B, S, H]
        return x, basal

    def forward(
        self,
        ctrl: Tensor,
        pert_idx: Tensor,
        batch_idx: Tensor | None = None,
        mask: Tensor | None = None,
        cell_type_idx: Tensor | None = None,  # accepted for a common signature with the baselines; unused
    ) -> STOutput:
        c = self.config
        ctrl = zero_padding(ctrl, mask)
        x, basal_code = self.encode(ctrl, pert_idx, batch_idx)
        h = self.transformer(x, mask)  # [B, S, H]
        if c.residual == "none":
            latent = self.project_out(h)
        elif c.residual == "hidden":
            latent = self.project_out(h + basal_code)
        elif self.final_down_then_up is not None:
            latent = self.final_down_then_up(self.project_out(h) + ctrl)
        else:
            change = self.project_out(h)  # [B, S, D_out]
            if c.centred_residual:
                change = change - masked_mean(change, mask)[:, None, :]
            shift = None
            if self.pert_shift is not None:
                shift = self.eval_shift(pert_idx)  # [B, D_out]
                if self.context_gain is not None:
                    shift = shift * (1 + self.context_gain(masked_mean(basal_code, mask)))
                if c.mean_change_cap is not None and not self.training:
                    change = cap_mean_change(change, shift, mask, c.mean_change_cap)
            latent = ctrl + change
            if shift is not None:
                latent = latent + shift[:, None, :]
        latent = self._output_activation(latent)
        genes = self.gene_decoder(latent) if self.gene_decoder is not None else None  # [B, S, G]
        return STOutput(latent, genes)

    def _output_activation(self, y: Tensor) -> Tensor:
        return apply_output_activation(y, self.config.output_activation)


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """Padding rows (mask False) set to exactly 0 before any layer: whatever a client put there (even NaN)
    cannot reach real cells, since attention weight 0 times NaN is still NaN."""
    if mask is None:
        return x
    return torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))


def cap_mean_change(change: Tensor, shift: Tensor, mask: Tensor | None, cap: float) -> Tensor:
    """change [B, S, D] with its set mean m [B, D] clipped to [-cap |shift|, cap |shift|] gene by gene, each
    cell's deviation from m kept. min/max rather than clamp with tensor bounds: it exports to ONNX."""
    mean = masked_mean(change, mask)
    bound = cap * shift.abs()
    capped = torch.maximum(torch.minimum(mean, bound), -bound)
    return change + (capped - mean)[:, None, :]


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the set axis of x [B, S, H], over real cells only (mask True) -> [B, H]."""
    if mask is None:
        return x.mean(1)
    w = mask.to(x.dtype)[..., None]  # [B, S, 1]
    return (x * w).sum(1) / w.sum(1).clamp_min(1)


def apply_output_activation(y: Tensor, name: str) -> Tensor:
    """The explicit output nonlinearity of STConfig.output_activation (none, relu, softplus)."""
    if name == "relu":
        return torch.relu(y)
    if name == "softplus":
        return nn.functional.softplus(y)
    return y
