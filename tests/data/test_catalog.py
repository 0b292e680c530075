"""Resolving dataset paths and validating the experiment TOML against the labels in the files."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.catalog import scan_experiment
from state_core.errors import ConfigError

COLUMNS = ObsColumns()
CTRL = "non-targeting"


def write_cells(path: Path, cells: dict[tuple[str, str], int], batch: bool = True) -> Path:
    """An h5ad with `n` cells for each (cell type, perturbation)."""
    labels = [key for key, n in cells.items() for _ in range(n)]
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([c for c, _ in labels]), "gene": pd.Categorical([p for _, p in labels])},
        index=[f"c{i}" for i in range(len(labels))],
    )
    if batch:
        obs["gem_group"] = pd.Categorical([f"b{i % 2}" for i in range(len(labels))])
    path.parent.mkdir(parents=True, exist_ok=True)
    ad.AnnData(X=np.zeros((len(labels), 2), np.float32), obs=obs).write_h5ad(path)
    return path


def toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(body)
    return path


def scan(tmp_path: Path, body: str, columns: ObsColumns = COLUMNS):
    return scan_experiment(load_experiment(toml(tmp_path, body)), columns)


def problem_keys(tmp_path: Path, body: str, columns: ObsColumns = COLUMNS) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        scan(tmp_path, body, columns)
    return {p.key: f"{p.message} | {p.hint}" for p in err.value.problems}


BASIC = {("K562", "A"): 3, ("K562", "B"): 2, ("K562", CTRL): 2, ("RPE1", "A"): 2, ("RPE1", CTRL): 2}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    write_cells(tmp_path / "d1/part_a.h5ad", BASIC)
    write_cells(tmp_path / "d1/part_b.h5", BASIC)
    write_cells(tmp_path / "d2/jurkat.h5ad", {("Jurkat", "A"): 2, ("Jurkat", CTRL): 1})
    return tmp_path


@pytest.mark.parametrize(
    ("path", "stems"),
    [
        ("d1", ["part_a", "part_b"]),
        ("d1/part_a.h5ad", ["part_a"]),
        ("d1/*.h5ad", ["part_a"]),
        ("{d1,d2}/*.h5ad", ["part_a", "jurkat"]),
        ("d?", ["part_a", "part_b", "jurkat"]),
    ],
)
def test_dataset_path_forms(data: Path, path: str, stems: list[str]) -> None:
    files = scan(data, f'[datasets]\nds = "{path}"\n[training]\nds = "train"\n')
    assert [f.stem for f in files] == stems
    assert files[0].n_cells == len(files[0].pert) and files[0].batch is not None


def test_files_sorted_by_dataset_then_path(data: Path) -> None:
    files = scan(data, '[datasets]\nzz = "d1"\naa = "d2"\n[training]\nzz = "train"\naa = "train"\n')
    assert [(f.dataset, f.stem) for f in files] == [("aa", "jurkat"), ("zz", "part_a"), ("zz", "part_b")]


def test_pattern_matching_nothing_names_key_and_pattern(data: Path) -> None:
    keys = problem_keys(data, '[datasets]\nds = "d9/*.h5ad"\n[training]\nds = "train"\n')
    assert list(keys) == ["datasets.ds"] and "d9/*.h5ad" in keys["datasets.ds"]


def test_duplicate_stems_are_an_error(data: Path) -> None:
    write_cells(data / "d3/k562.h5ad", BASIC)
    write_cells(data / "d3/k562.h5", BASIC)
    keys = problem_keys(data, '[datasets]\nds = "d3"\n[training]\nds = "train"\n')
    assert "'k562'" in keys["datasets.ds"]


def test_missing_column_names_flag_and_available_columns(data: Path) -> None:
    keys = problem_keys(data, '[datasets]\nds = "d2"\n[training]\nds = "train"\n', ObsColumns(pert_col="target_gene"))
    assert (
        "'target_gene'" in keys["datasets.ds"]
        and "--pert-col" in keys["datasets.ds"]
        and "'gene'" in keys["datasets.ds"]
    )


def test_batch_column_optional(data: Path) -> None:
    write_cells(data / "nb/x.h5ad", BASIC, batch=False)
    body = '[datasets]\nds = "nb"\n[training]\nds = "train"\n'
    assert "--batch-col" in problem_keys(data, body)["datasets.ds"]
    files = scan(data, body, ObsColumns(batch_col=None))
    assert files[0].batch is None


def test_unknown_zeroshot_cell_type_lists_available(data: Path) -> None:
    keys = problem_keys(data, '[datasets]\nds = "d1"\n[training]\nds = "train"\n[zeroshot]\n"ds.HepG2" = "test"\n')
    assert list(keys) == ['zeroshot."ds.HepG2"'] and "K562, RPE1" in keys['zeroshot."ds.HepG2"']


def test_unknown_fewshot_perturbation_suggests_close_match(data: Path) -> None:
    write_cells(data / "d4/x.h5ad", {("K562", "AARS"): 2, ("K562", "B"): 2, ("K562", CTRL): 3})
    body = '[datasets]\nds = "d4"\n[training]\nds = "train"\n[fewshot."ds.K562"]\nval = ["AARS1"]\n'
    keys = problem_keys(data, body)
    assert list(keys) == ['fewshot."ds.K562".val'] and "AARS" in keys['fewshot."ds.K562".val']


def test_control_label_missing_from_a_file(data: Path) -> None:
    write_cells(data / "d5/x.h5ad", {("K562", "A"): 2, ("K562", "non-targetting"): 2})
    keys = problem_keys(data, '[datasets]\nds = "d5"\n[training]\nds = "train"\n')
    assert "'non-targeting' not found" in keys["datasets.ds"] and "non-targetting" in keys["datasets.ds"]


@pytest.mark.parametrize(
    "role", ['[training]\nds = "train"\n', '[training]\nok = "train"\n[zeroshot]\n"ds.HepG2" = "test"\n']
)
def test_cell_type_without_controls_is_an_error(data: Path, role: str) -> None:
    write_cells(data / "d6/x.h5ad", {("HepG2", "A"): 2, ("K562", "A"): 1, ("K562", CTRL): 1})
    keys = problem_keys(data, f'[datasets]\nds = "d6"\nok = "d2"\n{role}')
    assert "HepG2" in keys["datasets.ds"] and "0 'non-targeting' control" in keys["datasets.ds"]


def test_fewshot_needs_a_control_per_split(data: Path) -> None:
    write_cells(data / "d7/x.h5ad", {("K562", "A"): 2, ("K562", "B"): 2, ("K562", CTRL): 1})
    body = '[datasets]\nds = "d7"\n[training]\nds = "train"\n[fewshot."ds.K562"]\ntest = ["B"]\n'
    assert "in train, test but only 1" in problem_keys(data, body)["datasets.ds"]


def test_all_data_problems_reported_together(data: Path) -> None:
    body = (
        '[datasets]\nds = "d1"\nempty = "nothing/*.h5ad"\n[training]\nds = "train"\nempty = "train"\n'
        '[zeroshot]\n"ds.HepG2" = "test"\n[fewshot."ds.K562"]\nval = ["Z"]\n'
    )
    keys = problem_keys(data, body)
    assert {"datasets.empty", 'zeroshot."ds.HepG2"', 'fewshot."ds.K562".val'} <= set(keys)


def test_synthetic_experiment_scans_clean(synth_experiment) -> None:
    files = scan_experiment(load_experiment(synth_experiment.zeroshot_toml), COLUMNS)
    assert [f.path for f in files] == synth_experiment.h5ad_paths
    assert files[0].pert.code_of(CTRL) >= 0
