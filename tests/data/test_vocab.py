"""Run vocabularies: observed labels in sorted order, JSON round trip, unknown labels, perturbation features."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from safetensors.numpy import save_file

from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.splits import SplitManifest, build_split_manifest
from state_core.data.vocab import Vocab, build_vocab, load_perturbation_features, one_hot_features
from state_core.errors import DataError, UnknownLabelError

CTRL = "non-targeting"
COLUMNS = dict(pert_col="gene", cell_type_key="cell_type", batch_col="gem_group", control_pert=CTRL)


@pytest.fixture(scope="module")
def manifest(synth_experiment_two_files) -> SplitManifest:
    return build_split_manifest(load_experiment(synth_experiment_two_files.zeroshot_toml), ObsColumns(), seed=0)


@pytest.fixture(scope="module")
def vocab(manifest: SplitManifest) -> Vocab:
    return build_vocab(manifest, embed_key="X_state", output_space="gene", **COLUMNS)


def small_vocab(**changes: object) -> Vocab:
    base = dict(
        perturbations=("A", "B", CTRL),
        cell_types=("K562", "RPE1"),
        batches=("b0", "b1"),
        feature_names=("f0", "f1"),
        gene_names=("g0", "g1", "g2"),
        control_pert=CTRL,
        pert_col="gene",
        cell_type_key="cell_type",
        batch_col="gem_group",
        embed_key="X_hvg",
        output_space="gene",
        pert_feature_dim=3,
    )
    return Vocab(**{**base, **changes})


def test_labels_are_the_sorted_observed_values_of_all_splits(vocab: Vocab, synth_experiment_two_files) -> None:
    obs = [ad.read_h5ad(p, backed="r").obs for p in synth_experiment_two_files.h5ad_paths]
    perts = sorted({str(v) for o in obs for v in o["gene"]})
    assert list(vocab.perturbations) == perts and CTRL in vocab.perturbations
    assert list(vocab.cell_types) == sorted({str(v) for o in obs for v in o["cell_type"]})
    assert list(vocab.batches) == sorted({str(v) for o in obs for v in o["gem_group"]})
    assert vocab.pert_feature_dim == len(perts)


def test_feature_and_gene_names_follow_embed_key_and_output_space(
    vocab: Vocab, manifest, synth_experiment_two_files
) -> None:
    hvg = ad.read_h5ad(synth_experiment_two_files.h5ad_paths[0], backed="r").uns["hvg_names"]
    assert vocab.feature_names == tuple(f"X_state_{i}" for i in range(16))
    assert vocab.gene_names == tuple(str(g) for g in hvg)  # gene targets come from X_hvg
    on_hvg = build_vocab(manifest, embed_key="X_hvg", output_space="gene", **COLUMNS)
    assert on_hvg.feature_names == on_hvg.gene_names == tuple(str(g) for g in hvg)
    assert build_vocab(manifest, embed_key="X_state", output_space="embedding", **COLUMNS).gene_names == ()
    assert len(build_vocab(manifest, embed_key="X_hvg", output_space="all", **COLUMNS).gene_names) == 120


def test_json_round_trip(vocab: Vocab, tmp_path: Path) -> None:
    path = vocab.save(tmp_path / "run" / "vocab.json")
    assert json.loads(path.read_text())["version"] == 1
    assert Vocab.load(path) == vocab
    assert not list(path.parent.glob(".vocab-*"))  # no temp file left behind


def test_load_rejects_other_versions(vocab: Vocab, tmp_path: Path) -> None:
    body = vocab.to_json_dict() | {"version": 99}
    (tmp_path / "vocab.json").write_text(json.dumps(body))
    with pytest.raises(DataError, match="version 99"):
        Vocab.load(tmp_path / "vocab.json")


def test_index_maps_names_and_lists_unknown_ones() -> None:
    vocab = small_vocab()
    np.testing.assert_array_equal(vocab.index("perturbation", ["B", CTRL, "A", "B"]), [1, 2, 0, 1])
    with pytest.raises(UnknownLabelError) as err:
        vocab.index("cell_type", ["K562", "HepG2", "Jurkat"])
    assert err.value.unknown == ["HepG2", "Jurkat"]
    assert "'K562', 'RPE1'" in str(err.value)


def test_vocab_is_frozen_and_requires_the_control() -> None:
    vocab = small_vocab()
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocab.control_pert = "A"  # type: ignore[misc]
    with pytest.raises(DataError, match="control_pert"):
        small_vocab(perturbations=("A", "B"))


def test_frozen_vocab_keeps_indices_and_rejects_or_appends_new_labels(manifest: SplitManifest, vocab: Vocab) -> None:
    base = dataclasses.replace(vocab, perturbations=tuple(p for p in vocab.perturbations if p != "GENE00024"))
    with pytest.raises(UnknownLabelError, match="GENE00024"):
        build_vocab(manifest, embed_key="X_state", output_space="gene", base=base, **COLUMNS)
    grown = build_vocab(manifest, embed_key="X_state", output_space="gene", base=base, allow_new_labels=True, **COLUMNS)
    assert grown.perturbations[: len(base.perturbations)] == base.perturbations
    assert grown.perturbations[-1] == "GENE00024"


def test_perturbation_features_in_vocab_order_with_zero_control(tmp_path: Path) -> None:
    path = tmp_path / "feats.safetensors"
    save_file(
        {
            "B": np.array([3.0, 4.0], np.float32),
            "A": np.array([1.0, 2.0], np.float32),
            "unused": np.ones(2, np.float32),
        },
        str(path),
    )
    table = load_perturbation_features(path, ["A", "B", CTRL], control_pert=CTRL)
    np.testing.assert_array_equal(table, [[1, 2], [3, 4], [0, 0]])


def test_perturbation_features_missing_names_are_an_error_listing_them(tmp_path: Path) -> None:
    path = tmp_path / "feats.safetensors"
    save_file({"A": np.ones(2, np.float32)}, str(path))
    with pytest.raises(DataError, match=r"2 perturbations .*'B', 'C'"):
        load_perturbation_features(path, ["A", "B", "C", CTRL], control_pert=CTRL)


def test_default_features_are_one_hot() -> None:
    np.testing.assert_array_equal(one_hot_features(3), np.eye(3))
