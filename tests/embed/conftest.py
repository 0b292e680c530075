"""Fixtures for SE tests: tiny raw-count h5ad files from the synthetic generator and a random SE model folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from se_tiny import PAD_LENGTH, TOKEN_DIM, tiny_config

from state_core.data.synth import SynthSpec, make_synthetic_adata
from state_core.embed.artifact import InputConvention, SEMeta, save_se_model
from state_core.embed.genes import GeneTable, save_gene_table
from state_core.embed.sentences import SentenceSpec
from state_core.models.se import StateEmbeddingModel

EXTRA_GENES = [f"EXTRA{i}" for i in range(10)]  # vocabulary genes absent from the data


@pytest.fixture(scope="session")
def se_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two raw-count files (CSR) over the same 40 genes: a.h5ad (48 cells) and b.h5ad (24 cells)."""
    root = tmp_path_factory.mktemp("se_data")
    files = {}
    for name, n_cells, seed in (("a", 48, 0), ("b", 24, 1)):
        adata = make_synthetic_adata(SynthSpec(n_cells=n_cells, n_genes=40, n_perturbations=4, seed=seed))
        path = root / f"{name}.h5ad"
        adata.write_h5ad(path)
        files[name] = path
    return files


@pytest.fixture(scope="session")
def gene_table(se_data: dict[str, Path]) -> GeneTable:
    import anndata as ad

    genes = list(ad.read_h5ad(se_data["a"], backed="r").var_names) + EXTRA_GENES
    return GeneTable(
        names=genes, vectors=torch.randn(len(genes), TOKEN_DIM, generator=torch.Generator().manual_seed(0))
    )


@pytest.fixture(scope="session")
def gene_table_file(tmp_path_factory: pytest.TempPathFactory, gene_table: GeneTable) -> Path:
    path = tmp_path_factory.mktemp("se_table") / "genes.safetensors"
    save_gene_table(path, gene_table)
    return path


@pytest.fixture(scope="session")
def se_model_dir(tmp_path_factory: pytest.TempPathFactory, gene_table: GeneTable) -> Path:
    """A randomly initialised SE model folder (raw-count convention, fixed sampling)."""
    torch.manual_seed(0)
    model = StateEmbeddingModel(tiny_config(), gene_table.vectors)
    meta = SEMeta(
        model_id="tiny-random",
        config=model.cfg,
        sentence=SentenceSpec(pad_length=PAD_LENGTH),
        convention=InputConvention("raw", None),
        vocab_digest=gene_table.digest(),
    )
    return save_se_model(tmp_path_factory.mktemp("se_model") / "model", model, meta, gene_table)
