"""The cell-set loader end to end on synthetic h5ad files: correct rows, controls, seeds, splits, stores."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from lightning.pytorch.utilities import move_data_to_device

from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.cellsets import CellSetBatch, StoreSettings
from state_core.data.datamodule import CellSetDataModule
from state_core.data.splits import SplitManifest, build_split_manifest
from state_core.data.vocab import Vocab, build_vocab

CTRL = "non-targeting"
COLUMNS = dict(pert_col="gene", cell_type_key="cell_type", batch_col="gem_group", control_pert=CTRL)
S, B = 8, 4


@pytest.fixture(scope="module")
def experiment(synth_experiment_two_files):
    return synth_experiment_two_files


@pytest.fixture(scope="module")
def manifest(experiment) -> SplitManifest:
    return build_split_manifest(load_experiment(experiment.zeroshot_toml), ObsColumns(), seed=0)


@pytest.fixture(scope="module")
def vocab(manifest: SplitManifest) -> Vocab:
    return build_vocab(manifest, embed_key="X_state", output_space="gene", **COLUMNS)


@pytest.fixture(scope="module")
def cells(experiment):
    """All rows of both files concatenated (global cell id order): obs labels and feature matrices."""
    parts = [ad.read_h5ad(p) for p in experiment.h5ad_paths]
    return ad.concat(parts)


def module(manifest, vocab, **kw) -> CellSetDataModule:
    return CellSetDataModule(manifest, vocab, cell_set_len=S, batch_size=B, seed=3, **kw)


def first_batches(loader, n: int = 3) -> list[CellSetBatch]:
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def row_keys(matrix: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in np.ascontiguousarray(matrix, dtype=np.float32)]


def test_batch_shapes_and_targets_are_the_rows_of_their_cells(manifest, vocab, cells) -> None:
    batch = next(iter(module(manifest, vocab).train_dataloader()))
    assert batch.ctrl.shape == (B, S, 16) and batch.target.shape == (B, S, 16)
    assert batch.target_genes.shape == (B, S, 64)  # X_state inputs + gene space -> X_hvg targets
    assert batch.pert_idx.shape == batch.cell_type_idx.shape == (B,)
    assert batch.mask.all() and batch.mask.dtype == torch.bool
    ids = batch.cell_id.numpy()
    np.testing.assert_array_equal(batch.target.numpy(), cells.obsm["X_state"][ids])
    np.testing.assert_array_equal(batch.target_genes.numpy(), cells.obsm["X_hvg"][ids])


def test_sets_are_homogeneous_and_labels_match_the_cells(manifest, vocab, cells) -> None:
    for batch in first_batches(module(manifest, vocab).train_dataloader()):
        ids = batch.cell_id.numpy()
        pert = vocab.index("perturbation", cells.obs["gene"].astype(str).to_numpy()[ids].ravel()).reshape(ids.shape)
        ct = vocab.index("cell_type", cells.obs["cell_type"].astype(str).to_numpy()[ids].ravel()).reshape(ids.shape)
        gem = vocab.index("batch", cells.obs["gem_group"].astype(str).to_numpy()[ids].ravel()).reshape(ids.shape)
        np.testing.assert_array_equal(pert, np.repeat(batch.pert_idx.numpy()[:, None], S, axis=1))
        np.testing.assert_array_equal(ct, np.repeat(batch.cell_type_idx.numpy()[:, None], S, axis=1))
        np.testing.assert_array_equal(gem, batch.batch_idx.numpy())


def control_rows_by(cells, manifest: SplitManifest, split: str, *keys: str) -> dict[tuple, set[bytes]]:
    """Feature rows of the split's control cells, keyed by the given obs columns (global id = file offset + row)."""
    n0 = ad.read_h5ad(manifest.files[0].path, backed="r").n_obs
    ids = np.concatenate([f.rows(split) + i * n0 for i, f in enumerate(manifest.files)])
    obs = cells.obs.iloc[ids]
    ctrl = ids[(obs["gene"] == CTRL).to_numpy()]
    out: dict[tuple, set[bytes]] = {}
    for i, key in zip(ctrl, zip(*(cells.obs[k].astype(str).to_numpy()[ctrl] for k in keys))):
        out.setdefault(key, set()).add(cells.obsm["X_state"][i].astype(np.float32).tobytes())
    return out


def test_controls_come_from_the_same_cell_type_in_the_same_split(manifest, vocab, cells) -> None:
    pools = control_rows_by(cells, manifest, "train", "cell_type")
    for batch in first_batches(module(manifest, vocab).train_dataloader()):
        for s in range(batch.n_sets):
            ct = vocab.cell_types[int(batch.cell_type_idx[s])]
            assert set(row_keys(batch.ctrl[s].numpy())) <= pools[(ct,)]


def test_batch_strategy_maps_controls_of_the_same_gem_group(manifest, vocab, cells) -> None:
    pools = control_rows_by(cells, manifest, "train", "cell_type", "gem_group")
    dm = module(manifest, vocab, basal_mapping_strategy="batch")
    for batch in first_batches(dm.train_dataloader()):
        for s in range(batch.n_sets):
            ct = vocab.cell_types[int(batch.cell_type_idx[s])]
            gem = vocab.batches[int(batch.batch_idx[s, 0])]
            assert (batch.batch_idx[s] == batch.batch_idx[s, 0]).all()
            assert set(row_keys(batch.ctrl[s].numpy())) <= pools[(ct, gem)]


def test_epochs_reshuffle_and_same_seed_and_epoch_repeat(manifest, vocab) -> None:
    dm = module(manifest, vocab)
    loader = dm.train_dataloader()
    dm.set_epoch(0)
    epoch0 = first_batches(loader)
    epoch1 = first_batches(loader)  # a second pass advances to epoch 1
    dm.set_epoch(0)
    again = first_batches(loader)
    assert not torch.equal(epoch0[0].cell_id, epoch1[0].cell_id)
    for a, b in zip(epoch0, again):
        assert torch.equal(a.cell_id, b.cell_id) and torch.equal(a.ctrl, b.ctrl)


def test_batches_do_not_depend_on_num_workers(manifest, vocab) -> None:
    serial = list(module(manifest, vocab).train_dataloader())
    dm = module(manifest, vocab, num_workers=2)
    dm.set_epoch(0)
    parallel = list(dm.train_dataloader())
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel):
        assert torch.equal(a.cell_id, b.cell_id) and torch.equal(a.ctrl, b.ctrl) and torch.equal(a.target, b.target)


def test_ddp_ranks_get_disjoint_sets_and_equal_batch_counts(manifest, vocab) -> None:
    loaders = [module(manifest, vocab, rank=r, world_size=2, drop_last=True).train_dataloader() for r in range(2)]
    batches = [list(loader) for loader in loaders]
    assert len(batches[0]) == len(batches[1]) > 0
    ids = [torch.cat([b.cell_id for b in rank]).reshape(-1, S) for rank in batches]
    sets = [{frozenset(r.tolist()) for r in rank} for rank in ids]
    assert not sets[0] & sets[1]


def test_test_loader_yields_every_test_cell_once_with_masks(manifest, vocab, cells) -> None:
    batches = list(module(manifest, vocab).test_dataloader())
    ids = torch.cat([b.cell_id[b.mask] for b in batches]).numpy()
    n0 = ad.read_h5ad(manifest.files[0].path, backed="r").n_obs
    expected = np.concatenate([f.test + i * n0 for i, f in enumerate(manifest.files)])
    np.testing.assert_array_equal(np.sort(ids), np.sort(expected))
    for b in batches:
        assert (b.cell_id[~b.mask] == -1).all() and (b.target[~b.mask] == 0).all()
        real = b.cell_id[b.mask].numpy()
        np.testing.assert_array_equal(b.target[b.mask].numpy(), cells.obsm["X_state"][real])
    assert any((~b.mask).any() for b in batches)  # groups not divisible by S are padded, not resampled


def test_row_labels_give_the_obs_labels_of_cell_ids(manifest, vocab, cells) -> None:
    dm = module(manifest, vocab)
    ids = np.array([0, 5, 760, 1499])
    frame = dm.row_labels(ids)
    for col in ("gene", "cell_type", "gem_group"):
        assert frame[col].tolist() == cells.obs[col].astype(str).to_numpy()[ids].tolist()
    assert frame["source_row"].tolist() == [0, 5, 10, 749]


def test_no_val_split_means_no_val_loader(tmp_path: Path, experiment, vocab) -> None:
    toml = tmp_path / "noval.toml"
    data_dir = experiment.h5ad_paths[0].parent
    toml.write_text(
        f'[datasets]\nsynth = "{data_dir}"\n[training]\nsynth = "train"\n[zeroshot]\n"synth.Jurkat" = "test"\n'
    )
    manifest = build_split_manifest(load_experiment(toml), ObsColumns(), seed=0)
    dm = module(manifest, vocab)
    assert dm.val_dataloader() == []
    assert len(list(dm.test_dataloader())) > 0


@pytest.mark.parametrize(
    ("embed_key", "output_space", "gene_width"),
    [("X_hvg", "gene", None), ("X_state", "embedding", None), ("X_state", "all", 120), ("X_hvg", "all", 120)],
)
def test_output_space_decides_the_gene_targets(manifest, embed_key, output_space, gene_width) -> None:
    vocab = build_vocab(manifest, embed_key=embed_key, output_space=output_space, **COLUMNS)
    batch = next(iter(module(manifest, vocab).val_dataloader()))
    if gene_width is None:
        assert batch.target_genes is None
    else:
        assert batch.target_genes.shape == (B, S, gene_width)


def test_memmap_and_float16_stores_give_the_same_batches(manifest, vocab, tmp_path: Path) -> None:
    ram = next(iter(module(manifest, vocab).train_dataloader()))
    disk_dm = module(manifest, vocab, store=StoreSettings(memory_budget_bytes=0, cache_dir=str(tmp_path)))
    disk = next(iter(disk_dm.train_dataloader()))
    assert disk_dm.split_data("train").features.streamed and list(tmp_path.glob("store-*.npy"))
    assert torch.equal(ram.ctrl, disk.ctrl) and torch.equal(ram.target_genes, disk.target_genes)
    half = next(iter(module(manifest, vocab, store=StoreSettings(dtype="float16")).train_dataloader()))
    assert half.ctrl.dtype == torch.float32
    torch.testing.assert_close(half.ctrl, ram.ctrl, atol=1e-2, rtol=1e-2)
    kept = module(manifest, vocab, store=StoreSettings(dtype="float16", batch_in_store_dtype=True))
    assert next(iter(kept.train_dataloader())).ctrl.dtype == torch.float16


def test_lightning_moves_the_batch_to_a_device(manifest, vocab) -> None:
    batch = next(iter(module(manifest, vocab).train_dataloader()))
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, CellSetBatch) and torch.equal(moved.ctrl, batch.ctrl)


class _RecordingModule(__import__("lightning").pytorch.LightningModule):
    """Records the cell ids it is trained on; the smallest module Lightning will fit."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, torch.Tensor]] = []
        self.validated = 0

    def training_step(self, batch: CellSetBatch, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch.cell_id.clone()))
        return (self.weight * batch.target.mean()).sum()

    def validation_step(self, batch: CellSetBatch, batch_idx: int) -> None:
        self.validated += 1

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_fit_reshuffles_each_epoch_and_skips_missing_validation(tmp_path: Path, experiment, vocab) -> None:
    import lightning.pytorch as pl

    toml = tmp_path / "noval.toml"
    toml.write_text(f'[datasets]\nsynth = "{experiment.h5ad_paths[0].parent}"\n[training]\nsynth = "train"\n')
    dm = module(build_split_manifest(load_experiment(toml), ObsColumns(), seed=0), vocab)
    model = _RecordingModule()
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    first = [ids for epoch, ids in model.seen if epoch == 0]
    second = [ids for epoch, ids in model.seen if epoch == 1]
    assert len(first) == len(second) == 2
    assert not torch.equal(first[0], second[0])
    assert model.validated == 0  # no val split: no validation, and the test split is not used instead
