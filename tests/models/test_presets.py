"""Presets reproduce the published sizes and validate overrides."""

from __future__ import annotations

import pytest

from state_core.errors import ConfigError
from state_core.models.baselines import build_model
from state_core.models.presets import DataDims, resolve_model_config

HVG_TAHOE = DataDims(input_dim=2000, output_dim=2000, n_perturbations=1138, output_space="gene")


@pytest.mark.parametrize(
    "preset, millions", [("state", 70.0), ("state_sm", 35.1), ("state_lg", 233.5), ("pertsets", 12.7)]
)
def test_parameter_counts_match_the_spec(preset: str, millions: float) -> None:
    # arc-state's architecture (arc_compat) has the published sizes; the default recipe adds exactly a
    # per-perturbation shift table [n_pert, D], two RMSNorm scales [H] on the codes and the context gain
    # Linear(H -> D)
    arc = resolve_model_config(preset, HVG_TAHOE, {"arc_compat": True}).model
    trainable = sum(p.numel() for p in build_model(preset, arc).parameters() if p.requires_grad) / 1e6
    assert abs(trainable - millions) / millions < 0.02
    default = resolve_model_config(preset, HVG_TAHOE).model
    d_out = HVG_TAHOE.output_dim
    extra = HVG_TAHOE.n_perturbations * d_out + 2 * default.hidden_dim + (default.hidden_dim + 1) * d_out
    assert (
        sum(p.numel() for p in build_model(preset, default).parameters())
        == sum(p.numel() for p in build_model(preset, arc).parameters()) + extra
    )


def test_overrides_use_the_original_key_names() -> None:
    resolved = resolve_model_config(
        "state",
        DataDims(8, 8, 3, n_batches=2, gene_dim=5),
        {
            "cell_set_len": 64,
            "hidden_dim": 32,
            "batch_encoder": True,
            "loss": "se",
            "decoder_loss_weight": 0.1,
            "transformer_backbone_kwargs": {
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "max_position_embeddings": 64,
            },
        },
    )
    m = resolved.model
    assert (m.cell_set_len, m.hidden_dim, m.n_layers, m.n_heads, m.ffn_dim, m.n_batches, m.gene_dim) == (
        64,
        32,
        2,
        4,
        64,
        2,
        5,
    )
    assert (resolved.loss.loss, resolved.loss.decoder_weight) == ("se", 0.1)


def test_pertsets_is_gpt2_with_a_linear_basal_encoder() -> None:
    m = resolve_model_config("pertsets", HVG_TAHOE).model
    assert (m.backbone, m.hidden_dim, m.n_layers, m.n_heads, m.cell_set_len, m.use_basal_projection) == (
        "gpt2",
        328,
        8,
        8,
        512,
        False,
    )


def test_unknown_override_keys_are_named() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_model_config("state", HVG_TAHOE, {"freeze_pert": True, "transformer_backbone_kwargs": {"n_ctx": 3}})
    message = str(err.value)
    assert "freeze_pert" in message and "n_ctx" in message


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ConfigError, match="state_xl"):
        resolve_model_config("state_xl", HVG_TAHOE)


def test_dependent_sizes_follow_an_overridden_width():
    # state_sm is 8 heads x 84 with an FFN of 4x672; at hidden_dim=336 the heads are 42 wide and the FFN 4x336
    from state_core.models.baselines import build_model
    from state_core.models.presets import DataDims, resolve_model_config

    dims = DataDims(input_dim=20, output_dim=20, n_perturbations=5, output_space="gene", embed_key="X_hvg")
    resolved = resolve_model_config("state_sm", dims, {"hidden_dim": 336})
    assert (resolved.model.head_dim, resolved.model.ffn_dim) == (42, 4 * 336)
    q = build_model("state_sm", resolved.model).transformer.layers[0].self_attn.q_proj.weight
    assert tuple(q.shape) == (336, 336)
    pertsets = resolve_model_config("pertsets", dims, {"hidden_dim": 336})
    assert pertsets.model.ffn_dim == 4 * 336 and pertsets.model.head_dim is None
    # explicit sizes win over the scaling
    explicit = resolve_model_config(
        "state_sm",
        dims,
        {"hidden_dim": 336, "transformer_backbone_kwargs": {"intermediate_size": 1000, "head_dim": 64}},
    )
    assert (explicit.model.head_dim, explicit.model.ffn_dim) == (64, 1000)


def test_arc_compat_keeps_arc_state_sizes_and_recipe():
    # arc-state's state_sm YAML fixes head_dim=84 and the FFN, so hidden_dim=336 keeps a 672-wide attention
    from state_core.models.baselines import build_model
    from state_core.models.presets import DataDims, resolve_model_config

    dims = DataDims(input_dim=20, output_dim=20, n_perturbations=5, output_space="gene", embed_key="X_hvg")
    resolved = resolve_model_config("state_sm", dims, {"hidden_dim": 336, "arc_compat": True})
    assert (resolved.model.head_dim, resolved.model.ffn_dim) == (84, 2688)
    assert resolved.model.residual == "hidden" and resolved.model.dropout == 0.1
    q = build_model("state_sm", resolved.model).transformer.layers[0].self_attn.q_proj.weight
    assert tuple(q.shape) == (8 * 84, 336)


def test_shift_shrinkage_is_on_by_default_and_off_under_arc_compat():
    from state_core.models.presets import DataDims, resolve_model_config

    dims = DataDims(input_dim=20, output_dim=20, n_perturbations=5, output_space="gene", embed_key="X_hvg")
    default = resolve_model_config("state_sm", dims).model
    assert default.pert_shift and default.shift_shrinkage and default.shift_lowrank and not default.centred_residual
    arc = resolve_model_config("state_sm", dims, {"arc_compat": True}).model
    assert not (arc.pert_shift or arc.shift_shrinkage or arc.shift_lowrank or arc.centred_residual)
    chosen = resolve_model_config("state_sm", dims, {"shift_shrinkage": False, "centred_residual": True}).model
    assert (chosen.shift_shrinkage, chosen.shift_lowrank, chosen.centred_residual) == (False, False, True)
    assert default.mean_change_cap == 0.5 and arc.mean_change_cap is None
    assert resolve_model_config("state_sm", dims, {"mean_change_cap": None}).model.mean_change_cap is None
    assert resolve_model_config("state_sm", dims, {"mean_change_cap": 2}).model.mean_change_cap == 2.0
    with pytest.raises(ConfigError, match="mean_change_cap"):
        resolve_model_config("state_sm", dims, {"mean_change_cap": "half"})
    diagonal = resolve_model_config("state_sm", dims, {"shift_lowrank": False}).model
    assert diagonal.shift_shrinkage and not diagonal.shift_lowrank
