"""Map an arc-state ST checkpoint onto `StateTransitionModel`: its config and its parameter names.

Pure mapping, no files: `ArcRun` holds what `state_core.runs.arc_import.read_arc_run` read from an arc-state
run folder. Parameter names are mapped onto `StateTransitionModel` (reference spec sections 1.3, 1.4, 8.3);
the zeroed token/position tables are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from state_core.errors import ArtifactError
from state_core.models.st import STConfig, StateTransitionModel

# features arc-state can switch on that this model does not implement: hparam key -> what it is
_UNSUPPORTED_FLAGS = {
    "confidence_token": "a confidence token",
    "confidence_head": "a confidence token",
    "use_batch_token": "a learned batch token",
    "batch_predictor": "a batch predictor head",
    "nb_decoder": "the negative-binomial gene decoder",
    "finetune_vci_decoder": "the SE (VCI) gene decoder",
}
_DROPPED = re.compile(
    r"^transformer_backbone\.(embed_tokens|wte|wpe|rotary_emb)\.|\.attn\.(bias|masked_bias)$|" r"^relu\."
)


@dataclass
class ArcRun:
    """The parts of an arc-state run folder the import needs."""

    hparams: dict[str, Any]
    state_dict: dict[str, Tensor]
    var_dims: dict[str, Any]
    pert_map: dict[str, Tensor]
    batch_map: dict[str, Tensor]
    cell_type_map: dict[str, Tensor]
    checkpoint: Path
    data_kwargs: dict[str, Any] = field(default_factory=dict)  # config.yaml data.kwargs (column names)


def ordered_labels(label_map: dict[str, Tensor]) -> list[str]:
    """Names in table order: by the position of the 1 for one-hot maps, else sorted (cell-load's order)."""
    names = sorted(label_map)
    vectors = [label_map[n] for n in names]
    is_one_hot = all(v.numel() == len(names) and v.sum() == 1 and v.max() == 1 for v in vectors)
    return sorted(names, key=lambda n: int(label_map[n].argmax())) if is_one_hot else names


def _backbone_kind(hp: dict[str, Any], ckpt: Path) -> str:
    key = str(hp.get("transformer_backbone_key", "GPT2")).lower()
    if key not in ("llama", "gpt2"):
        raise ArtifactError(f"{ckpt}: transformer_backbone_key {key!r} is not supported (llama or GPT2)")
    return key


def arc_st_config(run: ArcRun, pert_table: Tensor) -> STConfig:
    """STConfig equal to the arc-state model in `run`; shapes come from the weights where possible."""
    hp, sd, ckpt = run.hparams, run.state_dict, run.checkpoint
    for flag, what in _UNSUPPORTED_FLAGS.items():
        if hp.get(flag):
            raise ArtifactError(f"{ckpt}: the model uses {what} ({flag}=true), which cannot be imported")
    if (hp.get("lora") or {}).get("enable"):
        raise ArtifactError(f"{ckpt}: LoRA adapters (lora.enable=true) cannot be imported; merge them first")
    kind = _backbone_kind(hp, ckpt)
    bb = dict(hp.get("transformer_backbone_kwargs") or {})
    if kind == "llama" and bb.get("bidirectional_attention") is False:
        raise ArtifactError(
            f"{ckpt}: the llama backbone was causal with rotary positions "
            f"(bidirectional_attention=false); only bidirectional models can be imported"
        )
    layer_ids = {int(m.group(1)) for k in sd if (m := re.match(r"transformer_backbone\.(?:layers|h)\.(\d+)\.", k))}
    hidden = int(hp["hidden_dim"])
    if kind == "llama":
        heads = int(bb.get("num_attention_heads", 32))
        ffn = sd["transformer_backbone.layers.0.mlp.gate_proj.weight"].shape[0]
        eps = float(bb.get("rms_norm_eps", 1e-6))
        # head_dim from the tensors: q_proj is [heads * head_dim, hidden] (arc-state's `state` uses 12 x 64 on 696)
        head_dim = sd["transformer_backbone.layers.0.self_attn.q_proj.weight"].shape[0] // heads
        kv_rows = sd["transformer_backbone.layers.0.self_attn.k_proj.weight"].shape[0]
        if int(bb.get("num_key_value_heads", heads)) != heads or kv_rows != heads * head_dim:
            raise ArtifactError(
                f"{ckpt}: grouped-query attention (num_key_value_heads != num_attention_heads) is not supported"
            )
    else:
        head_dim = None
        heads = int(bb.get("n_head", 12))
        ffn = sd["transformer_backbone.h.0.mlp.c_fc.weight"].shape[1]  # HF Conv1D stores [in, out]
        eps = float(bb.get("layer_norm_epsilon", 1e-5))
    decoder = dict(hp.get("decoder_cfg") or {})
    has_decoder = any(k.startswith("gene_decoder.") for k in sd)
    embed_key = hp.get("embed_key")
    output_space = str(hp.get("output_space", "gene"))
    n_batches = sd["batch_encoder.weight"].shape[0] if "batch_encoder.weight" in sd else None
    return STConfig(
        input_dim=int(hp["input_dim"]),
        output_dim=int(hp["output_dim"]),
        n_perturbations=pert_table.shape[0],
        hidden_dim=hidden,
        pert_feature_dim=_feature_dim_if_not_identity(pert_table),
        n_batches=n_batches,
        n_cell_types=len(run.cell_type_map) or None,
        backbone=kind,
        n_layers=len(layer_ids),
        n_heads=heads,
        head_dim=None if head_dim is None or head_dim * heads == hidden else head_dim,
        ffn_dim=int(ffn),
        norm_eps=eps,
        n_encoder_layers=int(hp.get("n_encoder_layers", 2)),
        n_decoder_layers=int(hp.get("n_decoder_layers", 2)),
        activation=str(hp.get("activation", "gelu")).lower(),
        dropout=float(hp.get("dropout", 0.1)),
        use_basal_projection=bool(hp.get("use_basal_projection", True)),
        predict_residual=bool(hp.get("predict_residual", True)),
        legacy_all_bottleneck=output_space == "all" and bool(hp.get("predict_residual", True)),
        output_space=output_space,
        # arc-state's rule, made explicit: ReLU for expression outputs or when nothing decodes the latent
        output_activation="relu" if embed_key in (None, "X_hvg") or not has_decoder else "none",
        gene_dim=int(decoder.get("gene_dim", _decoder_out_dim(sd))) if has_decoder else None,
        decoder_hidden_dims=tuple(int(h) for h in decoder.get("hidden_dims", _decoder_hidden(sd))),
        decoder_dropout=float(decoder.get("dropout", 0.1)),
        residual_decoder=bool(decoder.get("residual_decoder", False)),
        # without it in the hparams, STConfig's default applies (the one default of cell_set_len)
        **({"cell_set_len": int(hp["cell_set_len"])} if "cell_set_len" in hp else {}),
    )


def _feature_dim_if_not_identity(table: Tensor) -> int | None:
    n, p = table.shape
    return None if n == p and torch.equal(table, torch.eye(n)) else p


def _decoder_linears(sd: dict[str, Tensor]) -> list[str]:
    return sorted(
        {
            k.rsplit(".", 1)[0]
            for k in sd
            if k.startswith("gene_decoder.") and k.endswith("weight") and sd[k].dim() == 2
        },
        key=lambda k: [int(t) if t.isdigit() else t for t in k.split(".")],
    )


def _decoder_out_dim(sd: dict[str, Tensor]) -> int:
    return sd[_decoder_linears(sd)[-1] + ".weight"].shape[0]


def _decoder_hidden(sd: dict[str, Tensor]) -> tuple[int, ...]:
    return tuple(sd[k + ".weight"].shape[0] for k in _decoder_linears(sd)[:-1])  # all but the output layer


def _map_name(name: str, n_hidden: int) -> tuple[str, bool]:
    """arc-state parameter name -> (our name, needs transpose)."""
    if name.startswith("transformer_backbone."):
        rest = name[len("transformer_backbone.") :]
        rest = re.sub(r"^h\.(\d+)\.", r"layers.\1.", rest)
        rest = re.sub(r"^ln_f\.", "norm.", rest)
        transpose = bool(re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", rest))  # HF Conv1D is [in, out]
        return "transformer." + rest, transpose
    if m := re.match(r"^gene_decoder\.decoder\.(\d+)\.(weight|bias)$", name):
        index, param = int(m.group(1)), m.group(2)
        block, position = divmod(index, 4)  # Linear, LayerNorm, GELU, Dropout per hidden width
        if block == n_hidden:
            return f"gene_decoder.out.{param}", False
        return f"gene_decoder.blocks.{block}.{position}.{param}", False
    if m := re.match(r"^gene_decoder\.final_layer\.0\.(weight|bias)$", name):
        return f"gene_decoder.out.{m.group(1)}", False
    return name, False


def map_arc_state_dict(state_dict: dict[str, Tensor], config: STConfig) -> dict[str, Tensor]:
    """Rename (and transpose GPT2 Conv1D weights) onto StateTransitionModel; drop the zeroed tables."""
    out: dict[str, Tensor] = {}
    n_hidden = len(config.decoder_hidden_dims)
    for name, value in state_dict.items():
        name = name.removeprefix("model.")
        if _DROPPED.search(name) or (name.startswith("final_down_then_up.") and not config.legacy_all_bottleneck):
            continue
        ours, transpose = _map_name(name, n_hidden)
        out[ours] = value.t().contiguous() if transpose else value
    return out


def _pert_table(run: ArcRun) -> tuple[list[str], Tensor]:
    names = ordered_labels(run.pert_map)
    if not names:
        raise ArtifactError(f"{run.checkpoint.parent.parent / 'pert_onehot_map.pt'} is empty")
    return names, torch.stack([run.pert_map[n] for n in names])  # [n_pert, P]


def build_imported_model(run: ArcRun) -> tuple[StateTransitionModel, list[str]]:
    names, table = _pert_table(run)
    config = arc_st_config(run, table)
    model = StateTransitionModel(config)
    state = map_arc_state_dict(run.state_dict, config)
    state["pert_features"] = table
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(
            f"{run.checkpoint}: weights do not map onto the model (missing {sorted(missing)[:6]}, "
            f"unexpected {sorted(unexpected)[:6]}); this arc-state variant is not supported"
        )
    return model.eval(), names
