"""The split stage: held-out controls, divided fewshot controls, determinism, artifacts, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from state_core.cli.main import main
from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.h5ad import read_obs_labels
from state_core.data.splits import SplitManifest, build_split_manifest, divide_controls, run_split

COLUMNS = ObsColumns()
CTRL = "non-targeting"


def write_cells(path: Path, cells: dict[tuple[str, str], int]) -> Path:
    """An h5ad with `n` cells for each (cell type, perturbation), rows interleaved."""
    labels = [key for key, n in cells.items() for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(labels))
    labels = [labels[i] for i in order]
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([c for c, _ in labels]),
            "gene": pd.Categorical([p for _, p in labels]),
            "gem_group": pd.Categorical(["b0"] * len(labels)),
        },
        index=[f"c{i}" for i in range(len(labels))],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ad.AnnData(X=np.zeros((len(labels), 2), np.float32), obs=obs).write_h5ad(path)
    return path


def manifest_for(tmp_path: Path, body: str, seed: int = 0) -> SplitManifest:
    path = tmp_path / "exp.toml"
    path.write_text(body)
    return build_split_manifest(load_experiment(path), COLUMNS, seed=seed)


def rows_where(path: str, cell_type: str, pert: str | None = None) -> np.ndarray:
    ct = read_obs_labels(path, "cell_type").values()
    genes = read_obs_labels(path, "gene").values()
    mask = ct == cell_type
    if pert is not None:
        mask &= genes == pert
    return np.flatnonzero(mask)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    cells = {("K562", p): 10 for p in "ABCD"} | {("K562", CTRL): 12, ("RPE1", "A"): 5, ("RPE1", CTRL): 4}
    write_cells(tmp_path / "d1/x.h5ad", cells)
    write_cells(tmp_path / "d2/y.h5ad", {("Jurkat", "A"): 6, ("Jurkat", "E"): 4, ("Jurkat", CTRL): 3})
    return tmp_path


FEWSHOT = '[datasets]\nd1 = "d1"\n[training]\nd1 = "train"\n[fewshot."d1.K562"]\nval = ["A", "B"]\ntest = ["B", "C"]\n'


def test_training_cell_types_go_to_train_whole(data: Path) -> None:
    m = manifest_for(data, '[datasets]\nd1 = "d1"\n[training]\nd1 = "train"\n')
    assert m.files[0].train.tolist() == list(range(61)) and m.n_cells("val") == m.n_cells("test") == 0


def test_zeroshot_controls_stay_out_of_train(data: Path) -> None:
    m = manifest_for(data, '[datasets]\nd1 = "d1"\n[training]\nd1 = "train"\n[zeroshot]\n"d1.RPE1" = "test"\n')
    path = m.files[0].path
    rpe1 = rows_where(path, "RPE1")
    assert np.array_equal(m.files[0].test, rpe1)
    assert not np.isin(rows_where(path, "RPE1", CTRL), m.files[0].train).any()


def test_zeroshot_of_non_training_dataset_adds_nothing_to_train(data: Path) -> None:
    m = manifest_for(
        data, '[datasets]\nd1 = "d1"\nd2 = "d2"\n[training]\nd1 = "train"\n[zeroshot]\n"d2.Jurkat" = "test"\n'
    )
    jurkat = next(f for f in m.files if f.dataset == "d2")
    assert jurkat.train.size == 0 and jurkat.test.size == 13


def test_non_training_dataset_uses_only_named_cell_types(data: Path) -> None:
    m = manifest_for(data, '[datasets]\nd1 = "d1"\n[fewshot."d1.K562"]\ntest = ["C"]\n')
    used = np.concatenate([m.files[0].train, m.files[0].val, m.files[0].test])
    assert not np.isin(rows_where(m.files[0].path, "RPE1"), used).any()
    assert m.summary["roles"] == {"d1": {"K562": "fewshot"}}


def test_fewshot_perturbations_go_to_their_splits(data: Path) -> None:
    f = manifest_for(data, FEWSHOT).files[0]
    for pert, splits in {"A": {"val"}, "B": {"val", "test"}, "C": {"test"}, "D": {"train"}}.items():
        rows = rows_where(f.path, "K562", pert)
        for split in ("train", "val", "test"):
            assert np.isin(rows, f.rows(split)).all() == (split in splits), (pert, split)


def test_fewshot_controls_divided_not_duplicated(data: Path) -> None:
    f = manifest_for(data, FEWSHOT).files[0]
    controls = rows_where(f.path, "K562", CTRL)
    parts = [np.intersect1d(controls, f.rows(s)) for s in ("train", "val", "test")]
    assert all(p.size >= 1 for p in parts)
    assert sum(p.size for p in parts) == controls.size
    assert np.array_equal(np.sort(np.concatenate(parts)), controls)
    # perturbed cells train 10 (D), val 20 (A, B), test 20 (B, C): one each, then 9 spare by largest
    # remainder (1.8, 3.6, 3.6 -> 2, 4, 3 with the tie going to the earlier split)
    assert [p.size for p in parts] == [3, 5, 4]


def test_divide_controls_is_proportional_with_one_each() -> None:
    parts = divide_controls(np.arange(100), {"train": 900, "val": 5, "test": 95}, np.random.default_rng(0))
    assert [parts[s].size for s in ("train", "val", "test")] == [88, 2, 10]
    assert parts["val"].size >= 1 and np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(100))


def test_same_seed_same_manifest_other_seed_other_division(data: Path) -> None:
    a, b, c = (manifest_for(data, FEWSHOT, seed=s) for s in (0, 0, 1))
    for split in ("train", "val", "test"):
        assert np.array_equal(a.files[0].rows(split), b.files[0].rows(split))
    assert any(not np.array_equal(a.files[0].rows(s), c.files[0].rows(s)) for s in ("train", "val", "test"))
    assert a.n_cells("val") == c.n_cells("val")


def test_manifest_independent_of_hash_seed(data: Path, tmp_path: Path) -> None:
    toml = data / "exp.toml"
    toml.write_text(FEWSHOT)
    run_split(toml, tmp_path / "here", COLUMNS, seed=3)
    env = dict(os.environ, PYTHONHASHSEED="12345")
    code = (
        "import sys; from state_core.config.experiment import ObsColumns; from state_core.data.splits import run_split;"
        "run_split(sys.argv[1], sys.argv[2], ObsColumns(), seed=3)"
    )
    subprocess.run([sys.executable, "-c", code, str(toml), str(tmp_path / "there")], env=env, check=True)
    here, there = SplitManifest.load(tmp_path / "here"), SplitManifest.load(tmp_path / "there")
    for split in ("train", "val", "test"):
        assert np.array_equal(here.files[0].rows(split), there.files[0].rows(split))


def test_save_load_round_trip(data: Path, tmp_path: Path) -> None:
    m = manifest_for(data, FEWSHOT, seed=7)
    out = m.save(tmp_path / "split")
    assert sorted(p.name for p in out.iterdir()) == ["split_manifest.npz", "split_summary.json", "split_summary.md"]
    back = SplitManifest.load(out)
    assert (back.seed, back.columns, back.files[0].path) == (7, COLUMNS, m.files[0].path)
    assert back.files[0].test.dtype == np.int64 and np.array_equal(back.files[0].test, m.files[0].test)
    with np.load(out / "split_manifest.npz", allow_pickle=False) as npz:
        assert "meta" in npz.files
    counts = json.loads((out / "split_summary.json").read_text())["counts"]["d1"]["K562"]
    assert counts["B"] == {"train": 0, "val": 10, "test": 10}
    assert "| d1 | K562 | fewshot |" in (out / "split_summary.md").read_text()


def test_synthetic_zeroshot_experiment(synth_experiment) -> None:
    m = build_split_manifest(load_experiment(synth_experiment.zeroshot_toml), COLUMNS)
    roles = m.summary["roles"][synth_experiment.dataset_name]
    assert roles[synth_experiment.zeroshot_test_cell_type] == "zeroshot:test"
    counts = m.summary["counts"][synth_experiment.dataset_name][synth_experiment.zeroshot_test_cell_type]
    assert counts[CTRL]["train"] == 0 and counts[CTRL]["test"] > 0


def test_cli_split_prints_summary(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = data / "exp.toml"
    toml.write_text(FEWSHOT)
    assert main(["data", "split", "--toml", str(toml), "--out", str(tmp_path / "cli"), "--seed", "2"]) == 0
    assert "| d1 | K562 | fewshot |" in capsys.readouterr().out
    assert SplitManifest.load(tmp_path / "cli").seed == 2


def test_cli_reports_config_errors_without_traceback(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = data / "exp.toml"
    toml.write_text(FEWSHOT)
    assert main(["data", "split", "--toml", str(toml), "--out", str(tmp_path / "x"), "--control-pert", "ctrl"]) == 2
    err = capsys.readouterr().err
    assert "control label 'ctrl' not found" in err and "Traceback" not in err
    assert not (tmp_path / "x" / "split_manifest.npz").exists()


def test_structural_and_data_problems_are_reported_together(data: Path) -> None:
    from state_core.errors import ConfigError

    toml = data / "exp.toml"
    toml.write_text(
        '[datasets]\nd1 = "d1"\n[training]\nd1 = "yes"\n[zeroshot]\n"d1.NOPE" = "test"\n'
        '[fewshot."d1.K562"]\nval = ["ZZZ"]\ntest = "C"\n'
    )
    with pytest.raises(ConfigError) as err:
        run_split(toml, data / "out", COLUMNS)
    keys = {p.key for p in err.value.problems}
    assert {"training.d1", 'fewshot."d1.K562".test'} <= keys  # structure
    assert {'zeroshot."d1.NOPE"', 'fewshot."d1.K562".val'} <= keys  # data
    assert not (data / "out").exists()
