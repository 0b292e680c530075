"""Structural rules of the experiment TOML: each bad file yields one problem naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from state_core.config.experiment import FewshotSplit, load_experiment
from state_core.errors import ConfigError

GOOD = """
[datasets]
replogle = "data/replogle"
other = "gs://bucket/other/*.h5ad"

[training]
replogle = "train"

[zeroshot]
"replogle.jurkat" = "test"

[fewshot."replogle.rpe1.v2"]
val = ["AARS"]
test = ["AARS", "NUP107"]
"""

HEADER = '[datasets]\nreplogle = "data"\n[training]\nreplogle = "train"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def _problems(tmp_path: Path, text: str) -> list:
    with pytest.raises(ConfigError) as err:
        load_experiment(_write(tmp_path, text))
    assert str(tmp_path / "exp.toml") in str(err.value)
    return err.value.problems


def test_good_config_parses(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, GOOD))
    assert cfg.training == ("replogle",)
    assert cfg.zeroshot == {("replogle", "jurkat"): "test"}
    # split at the first dot: the cell type keeps its own dots
    assert cfg.fewshot == {("replogle", "rpe1.v2"): FewshotSplit(val=("AARS",), test=("AARS", "NUP107"))}
    assert cfg.used_datasets() == ["replogle"]


def test_relative_paths_resolve_against_toml_directory(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, GOOD))
    assert cfg.datasets["replogle"] == str(tmp_path / "data" / "replogle")
    assert cfg.datasets["other"] == "gs://bucket/other/*.h5ad"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (HEADER + "[project]\nname = 'x'\n", "project"),
        ('[datasets]\nreplogle = "data"\n[training]\nreplogle = "yes"\n', "training.replogle"),
        (HEADER + '[zeroshot]\n"jurkat" = "test"\n', 'zeroshot."jurkat"'),
        (HEADER + '[zeroshot]\n"nope.jurkat" = "test"\n', 'zeroshot."nope.jurkat"'),
        (HEADER + '[zeroshot]\n"replogle.jurkat" = "holdout"\n', 'zeroshot."replogle.jurkat"'),
        (HEADER + '[zeroshot]\n"replogle.jurkat" = "train"\n', 'zeroshot."replogle.jurkat"'),
        (HEADER + '[fewshot."replogle.rpe1"]\nval = ["A"]\ntrain = ["B"]\n', 'fewshot."replogle.rpe1".train'),
        (HEADER + '[fewshot."replogle.rpe1"]\nval = "AB"\n', 'fewshot."replogle.rpe1".val'),
        (HEADER + '[fewshot."replogle.rpe1"]\ntest = [1, 2]\n', 'fewshot."replogle.rpe1".test'),
        (HEADER + '[fewshot]\n"rpe1" = {val = ["A"]}\n', 'fewshot."rpe1"'),
        (HEADER + '[fewshot."nope.rpe1"]\nval = ["A"]\n', 'fewshot."nope.rpe1"'),
        (HEADER + '[fewshot."replogle.rpe1"]\nval = []\n', 'fewshot."replogle.rpe1"'),
        (
            HEADER + '[zeroshot]\n"replogle.rpe1" = "val"\n[fewshot."replogle.rpe1"]\nval = ["A"]\n',
            'zeroshot."replogle.rpe1"',
        ),
        ('[datasets]\nreplogle = "data"\n[training]\nreplogle = "train"\nother = "train"\n', "training.other"),
        ('[datasets]\n"a.b" = "data"\n[training]\nreplogle = "train"\nreplogle2 = "x"\n', "datasets.a.b"),
        ('[datasets]\nreplogle = 3\n[training]\nreplogle = "train"\n', "datasets.replogle"),
        ('[datasets]\nreplogle = "data"\n', "training"),
    ],
)
def test_each_rule_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    problems = _problems(tmp_path, text)
    assert key in [p.key for p in problems], [str(p) for p in problems]
    assert all(p.hint for p in problems)


def test_one_problem_per_single_mistake(tmp_path: Path) -> None:
    problems = _problems(tmp_path, HEADER + '[zeroshot]\n"replogle.jurkat" = "holdout"\n')
    assert len(problems) == 1


def test_several_problems_reported_together(tmp_path: Path) -> None:
    text = (
        '[datasets]\nreplogle = "data"\n[training]\nreplogle = "yes"\n[project]\n'
        '[zeroshot]\n"jurkat" = "test"\n"missing.k562" = "val"\n'
        '[fewshot."replogle.rpe1"]\nval = "A"\n'
    )
    keys = {p.key for p in _problems(tmp_path, text)}
    assert {
        "training.replogle",
        "project",
        'zeroshot."jurkat"',
        'zeroshot."missing.k562"',
        'fewshot."replogle.rpe1".val',
    } <= keys


def test_syntax_error_reports_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, '[datasets]\nreplogle = "data"\n[training\n')
    assert problems[0].key == "(syntax)" and "line 3" in problems[0].message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_experiment(tmp_path / "absent.toml")
