"""Named model presets (`state`, `state_sm`, `state_lg`, `pertsets`) as rows of data.

`resolve_model_config(preset, dims, overrides)` turns a preset, the data's dimensions and the user's
`model.kwargs.*` overrides (original State CLI key names) into a typed `STConfig` plus a `LossConfig`.
Unknown keys are a `ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state_core.errors import ConfigError, Problem
from state_core.models.losses import LossConfig
from state_core.models.st import RESIDUAL_SPACES, STConfig


@dataclass(frozen=True)
class Preset:
    """One row of the preset table (reference spec section 4)."""

    name: str
    backbone: str
    hidden_dim: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    cell_set_len: int
    use_basal_projection: bool
    gene_decoder: bool = True
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    head_dim: int | None = None  # fixed per preset as in the original YAML (not scaled with hidden_dim)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("state", "llama", 696, 8, 12, 2784, 512, use_basal_projection=True, head_dim=58),
        Preset("state_sm", "llama", 672, 4, 8, 2688, 128, use_basal_projection=False, gene_decoder=False, head_dim=84),
        Preset("state_lg", "llama", 1488, 6, 12, 5952, 512, use_basal_projection=False, head_dim=124),
        Preset("pertsets", "gpt2", 328, 8, 8, 4 * 328, 512, use_basal_projection=False),
        # baselines: only the encoder/decoder widths matter (no backbone is built)
        Preset(
            "embed_sum", "llama", 512, 1, 8, 512, 512, use_basal_projection=True, n_encoder_layers=3, n_decoder_layers=3
        ),
        Preset("context_mean", "llama", 8, 1, 1, 8, 512, use_basal_projection=False),
        Preset("perturb_mean", "llama", 8, 1, 1, 8, 512, use_basal_projection=False, gene_decoder=False),
        Preset("perturb_mean_celltype", "llama", 8, 1, 1, 8, 512, use_basal_projection=False, gene_decoder=False),
    )
}


@dataclass(frozen=True)
class DataDims:
    """What the data decides: widths, label counts and the target space."""

    input_dim: int
    output_dim: int
    n_perturbations: int
    pert_feature_dim: int | None = None
    n_batches: int = 0
    n_cell_types: int | None = None
    gene_dim: int | None = None  # width of gene targets; None when the data has none
    output_space: str = "all"
    embed_key: str | None = "X_hvg"


@dataclass(frozen=True)
class ResolvedModelConfig:
    preset: str
    model: STConfig
    loss: LossConfig

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "model": self.model.to_dict(), "loss": self.loss.to_dict()}


# Recipe defaults of new runs (measured in bench/quality.py; docs/training.md). `arc_compat=true` restores
# arc-state's: MLP dropout 0.1, hidden-space residual, no code norms, no shift table, fixed YAML sizes.
DEFAULT_DROPOUT = 0.0
ARC_DROPOUT = 0.1
DEFAULT_SHIFT_LR_SCALE = 10.0
# eval-mode bound on the transformer's set-mean change, as a fraction of the table shift (bench/RESULTS.md)
DEFAULT_MEAN_CHANGE_CAP = 0.5
# Baselines that add a mean shift to control cells: unclipped by default, as the field defines them (clipping
# at 0 keeps zero cells from moving down, which alone cost 0.08 pearson_delta); output_activation=relu clips.
SHIFT_BASELINES = ("perturb_mean", "perturb_mean_celltype")

# model.kwargs keys that map straight onto STConfig fields
_DIRECT_KEYS = (
    "train_shift",
    "hidden_dim",
    "cell_set_len",
    "n_encoder_layers",
    "n_decoder_layers",
    "use_basal_projection",
    "predict_residual",
    "activation",
    "dropout",
    "decoder_hidden_dims",
    "decoder_dropout",
    "residual_decoder",
    "output_activation",
)
# keys handled specially below
_SPECIAL_KEYS = (
    "batch_encoder",
    "gene_decoder_bool",
    "transformer_backbone_key",
    "transformer_backbone_kwargs",
    "residual_space",
    "arc_compat",
    "code_norm",
    "pert_shift",
    "context_gain",
    "shift_lr_scale",
    "shift_shrinkage",
    "shift_lowrank",
    "centred_residual",
    "mean_change_cap",
)
# backbone kwargs (HF names) -> STConfig field
_BACKBONE_FIELDS = {
    "hidden_size": "hidden_dim",
    "n_embd": "hidden_dim",
    "num_hidden_layers": "n_layers",
    "n_layer": "n_layers",
    "num_attention_heads": "n_heads",
    "n_head": "n_heads",
    "intermediate_size": "ffn_dim",
    "n_inner": "ffn_dim",
    "rms_norm_eps": "norm_eps",
    "layer_norm_epsilon": "norm_eps",
    "head_dim": "head_dim",
}
# HF config keys that have no effect on a position-free, dropout-free set transformer
_INERT_BACKBONE_KEYS = frozenset(
    {
        "n_positions",
        "max_position_embeddings",
        "vocab_size",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rotary_dim",
        "use_rotary_embeddings",
        "layer_norm_eps",
        "hidden_act",
        "activation_function",
        "attention_dropout",
        "attn_pdrop",
        "resid_pdrop",
        "embd_pdrop",
        "d_inner",
        "num_key_value_heads",
        "attention_bias",
        "mlp_bias",
        "initializer_range",
        "use_cache",
        "_attn_implementation",
        "attn_implementation",
        "hidden_dropout",
        "bidirectional_attention",  # arc-state >= 0.10 flag; attention here is always bidirectional
    }
)


def default_output_activation(embed_key: str | None) -> str:
    """Log-normalised expression (X or X_hvg) is non-negative -> ReLU; embeddings -> no nonlinearity."""
    return "relu" if embed_key in (None, "X_hvg") else "none"


def resolve_model_config(
    preset: str, dims: DataDims, overrides: Mapping[str, Any] | None = None, source: str = "model.kwargs"
) -> ResolvedModelConfig:
    """Preset row + data dims + overrides -> (STConfig, LossConfig); every problem in one ConfigError."""
    if preset not in PRESETS:
        raise ConfigError(source, Problem("model", f"unknown preset {preset!r}", f"use one of {', '.join(PRESETS)}"))
    row = PRESETS[preset]
    overrides = dict(overrides or {})
    problems: list[Problem] = []

    values: dict[str, Any] = {
        "input_dim": dims.input_dim,
        "output_dim": dims.output_dim,
        "n_perturbations": dims.n_perturbations,
        "pert_feature_dim": dims.pert_feature_dim,
        "n_cell_types": dims.n_cell_types,
        "output_space": dims.output_space,
        "output_activation": "none" if preset in SHIFT_BASELINES else default_output_activation(dims.embed_key),
        **{f.name: getattr(row, f.name) for f in dataclasses.fields(Preset) if f.name in _STCONFIG_FIELDS},
    }
    arc_compat = bool(overrides.pop("arc_compat", False))
    values["dropout"] = ARC_DROPOUT if arc_compat else DEFAULT_DROPOUT
    requested_residual = str(overrides.pop("residual_space", "auto"))
    residual_space = "hidden" if arc_compat else requested_residual
    code_norm, pert_shift = overrides.pop("code_norm", None), overrides.pop("pert_shift", None)
    context_gain, shift_lr_scale = overrides.pop("context_gain", None), overrides.pop("shift_lr_scale", None)
    shrinkage, centred = overrides.pop("shift_shrinkage", None), overrides.pop("centred_residual", None)
    lowrank = overrides.pop("shift_lowrank", None)
    cap_given = "mean_change_cap" in overrides  # null switches it off; absent means the default
    mean_change_cap = overrides.pop("mean_change_cap", None)
    gene_decoder = row.gene_decoder
    loss_values: dict[str, Any] = {}
    width_overridden = "hidden_dim" in overrides and overrides["hidden_dim"] != row.hidden_dim
    for key, value in overrides.items():
        if key in _DIRECT_KEYS:
            values[key] = tuple(value) if key == "decoder_hidden_dims" else value
        elif key == "batch_encoder":
            values["n_batches"] = dims.n_batches if value else None
            if value and not dims.n_batches:
                problems.append(
                    Problem(
                        f"{source}.batch_encoder",
                        "is true but the data has no batch labels",
                        "set batch_encoder=false or give a batch column",
                    )
                )
        elif key == "gene_decoder_bool":
            gene_decoder = bool(value)
        elif key == "transformer_backbone_key":
            kind = str(value).lower()
            if kind not in ("llama", "gpt2"):
                problems.append(Problem(f"{source}.{key}", f"unknown backbone {value!r}", "use llama or GPT2"))
            values["backbone"] = kind
        elif key == "transformer_backbone_kwargs":
            problems += _apply_backbone_kwargs(values, dict(value or {}), f"{source}.{key}")
        elif key in LossConfig.keys():
            loss_values[key] = value
        else:
            problems.append(
                Problem(
                    f"{source}.{key}", "unknown model key", f"remove it; known keys: {', '.join(sorted(_known_keys()))}"
                )
            )
    values["gene_dim"] = dims.gene_dim if gene_decoder else None
    if width_overridden and not arc_compat:
        _scale_with_width(values, row, overrides)
    if residual_space == "auto":
        residual_space = "input" if dims.input_dim == dims.output_dim else "hidden"
    elif residual_space not in RESIDUAL_SPACES:
        problems.append(
            Problem(f"{source}.residual_space", f"{residual_space!r} is not allowed", "use auto, input or hidden")
        )
    values["residual_space"] = residual_space
    values["code_norm"] = bool(code_norm if code_norm is not None else not arc_compat)
    values["pert_shift"] = bool(pert_shift if pert_shift is not None else not arc_compat and residual_space == "input")
    values["context_gain"] = bool(context_gain if context_gain is not None else values["pert_shift"])
    values["shift_shrinkage"] = bool(shrinkage if shrinkage is not None else values["pert_shift"])
    values["shift_lowrank"] = bool(lowrank if lowrank is not None else values["shift_shrinkage"])
    values["centred_residual"] = bool(centred)  # opt-in: it cost overlap_at_N everywhere (bench/RESULTS.md)
    if mean_change_cap is not None and (
        isinstance(mean_change_cap, bool) or not isinstance(mean_change_cap, (int, float))
    ):
        problems.append(Problem(f"{source}.mean_change_cap", f"{mean_change_cap!r} is not a number", "e.g. 0.5"))
        mean_change_cap = None
    if not cap_given and values["pert_shift"]:
        mean_change_cap = DEFAULT_MEAN_CHANGE_CAP
    values["mean_change_cap"] = None if mean_change_cap is None else float(mean_change_cap)
    values["shift_lr_scale"] = float(
        shift_lr_scale if shift_lr_scale is not None else 1.0 if arc_compat else DEFAULT_SHIFT_LR_SCALE
    )
    if problems:
        raise ConfigError(source, problems)
    loss = LossConfig.from_dict(loss_values, source)
    model = STConfig.from_dict(values, source)
    return ResolvedModelConfig(preset, model, loss)


def _scale_with_width(values: dict[str, Any], row: Preset, overrides: Mapping[str, Any]) -> None:
    """A preset's width was overridden: sizes defined relative to it follow (FFN width, head size),
    unless the user set them too. arc-state kept its YAML literals, which e.g. left state_sm at 8 heads of
    84 and an FFN of 2688 on a 336-wide stream."""
    hidden = int(values["hidden_dim"])
    backbone = dict(overrides.get("transformer_backbone_kwargs") or {})
    if not {"intermediate_size", "n_inner"} & set(backbone):
        values["ffn_dim"] = max(1, round(row.ffn_dim * hidden / row.hidden_dim))
    if "head_dim" not in backbone and values.get("backbone") == "llama":
        values["head_dim"] = max(1, round(hidden / int(values["n_heads"])))


def _apply_backbone_kwargs(values: dict[str, Any], kwargs: dict[str, Any], where: str) -> list[Problem]:
    problems = []
    for key, value in kwargs.items():
        if key in _BACKBONE_FIELDS:
            target = _BACKBONE_FIELDS[key]
            if target == "hidden_dim" and value != values["hidden_dim"]:
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        f"{value} differs from hidden_dim={values['hidden_dim']}",
                        "set hidden_dim instead; encoders and backbone share one width",
                    )
                )
            values[target] = value
        elif key not in _INERT_BACKBONE_KEYS:
            problems.append(
                Problem(f"{where}.{key}", "unknown backbone key", f"use one of {', '.join(sorted(_BACKBONE_FIELDS))}")
            )
    if kwargs.get("num_key_value_heads", values["n_heads"]) != values["n_heads"]:
        problems.append(
            Problem(
                f"{where}.num_key_value_heads",
                "grouped-query attention is not supported",
                "set num_key_value_heads equal to num_attention_heads",
            )
        )
    return problems


_STCONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(STConfig))


def _known_keys() -> set[str]:
    return set(_DIRECT_KEYS) | set(_SPECIAL_KEYS) | LossConfig.keys()
