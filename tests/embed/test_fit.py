"""`emb fit`: a few Lightning steps on two files produce a model folder; resume; the LR schedule."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from state_core.embed.config import OptimizerSection, parse_fit_config
from state_core.embed.fit import fit_se, lr_factor, tabular_loss
from state_core.embed.transform import transform_h5ad


def fit_config(se_data, table_file: Path, out: Path, max_steps: int):
    return parse_fit_config(
        {
            "gene_embeddings": str(table_file),
            "output_dir": str(out),
            "seed": 0,
            "datasets": [{"name": "b", "path": str(se_data["b"])}, {"name": "a", "path": str(se_data["a"])}],
            "model": {"d_model": 32, "d_hid": 64, "nhead": 4, "nlayers": 2, "output_dim": 32},
            "data": {
                "pad_length": 64,
                "positives": 8,
                "negatives": 8,
                "shared": 8,
                "batch_size": 16,
                "val_fraction": 0.1,
            },
            "optimizer": {"max_lr": 1e-3},
            "trainer": {"max_steps": max_steps, "checkpoint_every_n_steps": 2},
        },
        "test",
    )


@pytest.fixture(scope="module")
def fitted(se_data, gene_table_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("se_fit") / "run"
    fit_se(fit_config(se_data, gene_table_file, out, max_steps=3))
    return out


def test_fit_writes_a_model_folder_that_transform_can_use(fitted, se_data, tmp_path):
    assert sorted(p.name for p in (fitted / "model").iterdir()) == [
        "gene_embeddings.safetensors",
        "gene_vocab.json",
        "model.safetensors",
        "se_config.json",
    ]
    assert "pe_embedding.weight" not in load_file(str(fitted / "model" / "model.safetensors"))
    summary = transform_h5ad(fitted, se_data["b"], tmp_path / "o.h5ad", progress=False)
    assert summary.dim == 42


def test_training_logs_a_finite_loss(fitted):
    with open(fitted / "version_0" / "metrics.csv") as f:
        losses = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_resume_continues_from_last_checkpoint(fitted, se_data, gene_table_file):
    before = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    fit_se(fit_config(se_data, gene_table_file, fitted, max_steps=5))
    after = torch.load(fitted / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert (before, after) == (3, 5)


def test_schedule_warms_up_then_one_cosine_to_the_floor():
    opt = OptimizerSection(start_factor=0.33, warmup_fraction=0.1, min_lr_fraction=0.3)
    lrs = [lr_factor(step, 100, opt) for step in range(101)]
    assert lrs[0] == pytest.approx(0.33) and lrs[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then only falls: no cyclic restart
    assert lrs[100] == pytest.approx(0.3)


def test_tabular_loss_is_per_cell_plus_per_shared_gene_l2():
    pred, target = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]]), torch.zeros(2, 3)
    expected = (10**0.5 + 0) / 2 + (3.0 + 0.0) / 1  # last column is the one shared gene
    assert tabular_loss(pred, target, n_shared=1).item() == pytest.approx(expected)
