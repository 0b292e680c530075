"""Import of arc-state run folders, on a small fake folder written with torch.save / pickle."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from state_core.errors import ArtifactError
from state_core.models.st import STConfig, StateTransitionModel
from state_core.runs.arc_import import import_arc_state_run
from state_core.runs.load import load_run

PERTS = ["GENE1", "GENE2", "non-targeting"]


def arc_names(model: StateTransitionModel) -> dict[str, torch.Tensor]:
    """Our weights under arc-state's (HF) parameter names, plus the zeroed tables arc-state keeps."""
    c, out = model.config, {}
    n_hidden = len(c.decoder_hidden_dims)
    for name, value in model.state_dict().items():
        if name == "pert_features":
            continue
        if name.startswith("transformer."):
            rest = name[len("transformer.") :]
            if c.backbone == "gpt2":
                rest = (
                    re.sub(r"^layers\.", "h.", rest).replace("norm.", "ln_f.", 1)
                    if rest.startswith("norm.")
                    else re.sub(r"^layers\.", "h.", rest)
                )
                if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", rest):
                    value = value.t().contiguous()  # HF Conv1D layout [in, out]
            name = "transformer_backbone." + rest
        elif m := re.match(r"gene_decoder\.blocks\.(\d+)\.(\d)\.(\w+)$", name):
            name = f"gene_decoder.decoder.{4 * int(m.group(1)) + int(m.group(2))}.{m.group(3)}"
        elif m := re.match(r"gene_decoder\.out\.(\w+)$", name):
            name = f"gene_decoder.decoder.{4 * n_hidden}.{m.group(1)}"
        out[name] = value
    table = "transformer_backbone.embed_tokens.weight" if c.backbone == "llama" else "transformer_backbone.wte.weight"
    out[table] = torch.zeros(50, c.hidden_dim)
    return out


def write_fake_run(folder: Path, model: StateTransitionModel, backbone_kwargs: dict) -> Path:
    c = model.config
    (folder / "checkpoints").mkdir(parents=True)
    hparams = {
        "input_dim": c.input_dim,
        "output_dim": c.output_dim,
        "hidden_dim": c.hidden_dim,
        "pert_dim": len(PERTS),
        "batch_dim": c.n_batches,
        "dropout": 0.1,
        "embed_key": "X_state",
        "output_space": c.output_space,
        "control_pert": "non-targeting",
        "n_encoder_layers": c.n_encoder_layers,
        "cell_set_len": 8,
        "n_decoder_layers": c.n_decoder_layers,
        "batch_encoder": True,
        "use_basal_projection": True,
        "predict_residual": True,
        "transformer_backbone_key": "llama" if c.backbone == "llama" else "GPT2",
        "transformer_backbone_kwargs": backbone_kwargs,
        "loss": "energy",
        "decoder_weight": 0.1,
        "decoder_cfg": {
            "latent_dim": c.output_dim,
            "gene_dim": c.gene_dim,
            "hidden_dims": list(c.decoder_hidden_dims),
            "dropout": 0.1,
            "residual_decoder": False,
        },
    }
    torch.save(
        {"state_dict": arc_names(model), "hyper_parameters": hparams, "epoch": 0}, folder / "checkpoints" / "final.ckpt"
    )
    with (folder / "var_dims.pkl").open("wb") as f:
        pickle.dump(
            {
                "input_dim": c.input_dim,
                "output_dim": c.output_dim,
                "gene_names": ["a", "b", "c", "d"],
                "pert_names": PERTS,
                "batch_dim": 2,
            },
            f,
        )
    torch.save({p: torch.eye(3)[i] for i, p in enumerate(PERTS)}, folder / "pert_onehot_map.pt")
    torch.save({"gem1": torch.tensor([1.0, 0.0]), "gem2": torch.tensor([0.0, 1.0])}, folder / "batch_onehot_map.torch")
    with (folder / "cell_type_onehot_map.pkl").open("wb") as f:
        pickle.dump({"K562": torch.tensor([1.0])}, f)
    (folder / "config.yaml").write_text("data:\n  kwargs:\n    pert_col: target_gene\n    cell_type_key: cell_line\n")
    return folder


@pytest.mark.parametrize(
    "backbone, kwargs, head_dim",
    [
        ("llama", {"num_attention_heads": 4, "num_key_value_heads": 4, "bidirectional_attention": True}, None),
        # arc-state's `state` preset: heads * head_dim (12 x 64) differs from the stream width (696)
        ("llama", {"num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 8}, 8),
        ("gpt2", {"n_head": 4, "n_layer": 2}, None),
    ],
)
def test_imported_run_predicts_like_the_source_model(tmp_path: Path, backbone: str, kwargs: dict, head_dim) -> None:
    torch.manual_seed(0)
    config = STConfig(
        input_dim=6,
        output_dim=6,
        n_perturbations=3,
        hidden_dim=16,
        backbone=backbone,
        n_layers=2,
        n_heads=4,
        head_dim=head_dim,
        ffn_dim=32 if backbone == "llama" else 64,
        n_batches=2,
        n_encoder_layers=2,
        n_decoder_layers=2,
        output_space="gene",
        gene_dim=4,
        decoder_hidden_dims=(8, 8),
    )
    source = StateTransitionModel(config).eval()
    result = import_arc_state_run(write_fake_run(tmp_path / "arc", source, kwargs), tmp_path / "ours")
    loaded = load_run(result.run_dir)
    ctrl, pert, batch = torch.randn(2, 5, 6), torch.tensor([0, 2]), torch.randint(0, 2, (2, 5))
    expected, got = source(ctrl, pert, batch), loaded.model(ctrl, pert, batch)
    torch.testing.assert_close(got.latent, expected.latent)
    torch.testing.assert_close(got.genes, expected.genes)
    assert loaded.vocab.perturbations == tuple(PERTS) and loaded.vocab.pert_col == "target_gene"
    assert loaded.loss_config.decoder_weight == 0.1
    assert not any("embed_tokens" in k or "wte" in k for k in loaded.model.state_dict())


def test_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    with pytest.raises(ArtifactError, match="already exists"):
        import_arc_state_run(tmp_path / "arc", tmp_path / "ours")


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "arc").mkdir()
    with pytest.raises(ArtifactError, match="final.ckpt"):
        import_arc_state_run(tmp_path / "arc", tmp_path / "ours")
    assert not (tmp_path / "ours").exists()


def test_checkpoint_with_an_arbitrary_class_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = STConfig(
        input_dim=6,
        output_dim=6,
        n_perturbations=3,
        hidden_dim=16,
        n_layers=1,
        n_heads=4,
        ffn_dim=32,
        n_batches=2,
        output_space="gene",
        gene_dim=4,
        decoder_hidden_dims=(8,),
    )
    folder = write_fake_run(tmp_path / "arc", StateTransitionModel(config), {"num_attention_heads": 4})
    ckpt = torch.load(folder / "checkpoints" / "final.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["loss_fn"] = torch.nn.MSELoss()
    torch.save(ckpt, folder / "checkpoints" / "final.ckpt")
    with pytest.raises(ArtifactError, match="MSELoss"):
        import_arc_state_run(folder, tmp_path / "ours")
    assert not (tmp_path / "ours").exists()
