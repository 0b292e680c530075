"""Import of an original SE folder: sizes from tensors, original names, table order, checkpoint choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from se_tiny import tiny_config

from state_core.embed.artifact import load_se_model
from state_core.embed.se_import import import_original_se
from state_core.errors import ArtifactError
from state_core.models.se import StateEmbeddingModel


def original_folder(root: Path, fallback_names: bool = False) -> tuple[Path, StateEmbeddingModel, list[str]]:
    """A folder laid out like the released SE models, made from a random model."""
    torch.manual_seed(1)
    genes = [f"G{i}" for i in range(40, 0, -1)]  # not sorted: the table's insertion order must win
    vectors = torch.randn(len(genes), 32)
    model = StateEmbeddingModel(tiny_config(num_datasets=3), vectors).eval()
    state = dict(model.state_dict())
    state["pe_embedding.weight"] = vectors
    state["gene_embedding_layer.0.weight"] = state["encoder.0.weight"]
    state["gene_embedding_layer.0.bias"] = state["encoder.0.bias"]
    if fallback_names:
        for i in range(2):
            p = f"transformer_encoder.layers.{i}."
            state[p + "self_attn.in_proj_weight"] = state.pop(p + "qkv_proj.weight")
            state[p + "self_attn.in_proj_bias"] = state.pop(p + "qkv_proj.bias")
    root.mkdir(parents=True)
    torch.save({"state_dict": state, "hyper_parameters": {"emsize": 32}}, root / "se_epoch4.ckpt")
    torch.save({g: vectors[i] for i, g in enumerate(genes)}, root / "protein_embeddings.pt")
    (root / "config.yaml").write_text(yaml.safe_dump({"model": {"nhead": 4}, "dataset": {"pad_length": 64}}))
    return root, model, genes


@pytest.mark.parametrize("fallback_names", [False, True])
def test_imported_model_reproduces_the_original_embeddings(tmp_path, fallback_names):
    folder, original, genes = original_folder(tmp_path / "SE-tiny", fallback_names)
    loaded = load_se_model(import_original_se(folder, tmp_path / "imported"))
    assert loaded.vocab == genes
    assert loaded.meta.sentence.compat and loaded.meta.sentence.pad_length == 64
    assert (loaded.meta.config.d_model, loaded.meta.config.nlayers, loaded.meta.config.num_datasets) == (32, 2, 3)
    ids, counts = torch.randint(0, 40, (3, 20)), torch.rand(3, 20)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids, counts).x_state, original(ids, counts).x_state)


def test_several_checkpoints_need_an_explicit_choice(tmp_path):
    folder, _, _ = original_folder(tmp_path / "SE-tiny")
    (folder / "se_epoch16.ckpt").write_bytes((folder / "se_epoch4.ckpt").read_bytes())
    with pytest.raises(ArtifactError, match="--checkpoint"):
        import_original_se(folder, tmp_path / "out")
    assert import_original_se(folder, tmp_path / "out", checkpoint="se_epoch16.ckpt").is_dir()


def test_missing_nhead_in_config_is_an_error(tmp_path):
    folder, _, _ = original_folder(tmp_path / "SE-tiny")
    (folder / "config.yaml").write_text("model: {}\n")
    with pytest.raises(ArtifactError, match="nhead"):
        import_original_se(folder, tmp_path / "out")


def test_transform_on_an_original_folder_points_to_import(tmp_path):
    folder, _, _ = original_folder(tmp_path / "SE-tiny")
    with pytest.raises(ArtifactError, match="emb import"):
        load_se_model(folder)


def test_pickled_omegaconf_hyper_parameters_load_inertly_and_code_is_refused(tmp_path):
    import os

    from omegaconf import OmegaConf

    folder, _, _ = original_folder(tmp_path / "SE-tiny")
    ckpt = torch.load(folder / "se_epoch4.ckpt", weights_only=True)
    ckpt["hyper_parameters"] = {"cfg": OmegaConf.create({"model": {"nhead": 4, "emsize": 32}})}
    torch.save(ckpt, folder / "se_epoch4.ckpt")
    assert load_se_model(import_original_se(folder, tmp_path / "ok")).meta.config.nhead == 4

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    ckpt["hyper_parameters"] = {"x": Evil()}
    torch.save(ckpt, folder / "se_epoch4.ckpt")
    with pytest.raises(ArtifactError, match="refuses to load class"):
        import_original_se(folder, tmp_path / "bad")


def test_imported_model_transforms_in_compat_mode(tmp_path, se_data):
    import anndata as ad
    import numpy as np

    from state_core.embed.transform import transform_h5ad

    folder, _, genes = original_folder(tmp_path / "SE-tiny")
    model_dir = import_original_se(folder, tmp_path / "imported")
    adata = ad.read_h5ad(se_data["b"])
    adata.var_names = genes  # 40 genes, same count as the synthetic file
    adata.write_h5ad(tmp_path / "cells.h5ad")
    transform_h5ad(model_dir, tmp_path / "cells.h5ad", tmp_path / "out.h5ad", progress=False)
    result = ad.read_h5ad(tmp_path / "out.h5ad")
    assert result.obsm["X_state"].shape == (24, 42) and bool(result.uns["X_state_meta"]["compat"])
    assert np.isfinite(result.obsm["X_state"]).all()
