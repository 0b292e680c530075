"""The experiment TOML: which datasets exist, which train, which cell types are held out.

    [datasets]                      # name -> directory, file, glob (with {a,b} braces) or gs:// URI
    replogle = "data/replogle/"     # relative paths resolve against the TOML file's directory
    [training]
    replogle = "train"              # the only accepted value
    [zeroshot]
    "replogle.jurkat" = "test"      # a whole cell type goes to "val" or "test"
    [fewshot."replogle.rpe1"]       # listed perturbations of one cell type go to val / test
    val = ["AARS"]
    test = ["AARS", "NUP107"]

This module checks structure only (no file access); `state_core.data.catalog` checks the TOML
against the data. Every problem found is reported together in one `ConfigError`.

Decisions that differ from cell-load:
  * unknown tables/keys, training values other than "train", fewshot keys other than val/test,
    keys without `dataset.cell_type` and zeroshot/fewshot conflicts are errors, not silent no-ops;
  * a zeroshot split must be "val" or "test". "train" is rejected: cell types of training datasets
    train already, so the entry could only mean something by accident.
Keys are split at the first dot, so dataset names cannot contain dots; cell types may.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state_core.errors import ConfigError, Problem

TABLES = ("datasets", "training", "zeroshot", "fewshot")
HELD_OUT_SPLITS = ("val", "test")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ObsColumns:
    """Names of the obs columns the data layer reads, and the control label."""

    pert_col: str = "gene"
    cell_type_key: str = "cell_type"
    batch_col: str | None = "gem_group"
    control_pert: str = "non-targeting"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "pert_col": self.pert_col,
            "cell_type_key": self.cell_type_key,
            "batch_col": self.batch_col,
            "control_pert": self.control_pert,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObsColumns:
        return cls(**{k: data[k] for k in ("pert_col", "cell_type_key", "batch_col", "control_pert") if k in data})


@dataclass(frozen=True)
class FewshotSplit:
    """Perturbations of one cell type held out for validation and for test."""

    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()


CellTypeKey = tuple[str, str]  # (dataset, cell_type)


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment TOML. `datasets` holds resolved paths / URIs."""

    source: str
    datasets: dict[str, str]
    training: tuple[str, ...] = ()
    zeroshot: dict[CellTypeKey, str] = field(default_factory=dict)
    fewshot: dict[CellTypeKey, FewshotSplit] = field(default_factory=dict)

    def used_datasets(self) -> list[str]:
        """Datasets that contribute cells: training ones plus those named in zeroshot/fewshot, sorted."""
        names = set(self.training) | {ds for ds, _ in self.zeroshot} | {ds for ds, _ in self.fewshot}
        return sorted(names)


def toml_key(dataset: str, cell_type: str) -> str:
    """The key as the user wrote it, quoted like TOML shows it: `"ds.ct"`."""
    return f'"{dataset}.{cell_type}"'


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and structurally validate an experiment TOML (see the module docstring)."""
    cfg, problems = read_experiment(path)
    if problems:
        raise ConfigError(cfg.source, problems)
    return cfg


def read_experiment(path: str | Path) -> tuple[ExperimentConfig, list[Problem]]:
    """Read an experiment TOML; return the usable part of it and every structural problem.

    Unreadable files and TOML syntax errors still raise, since nothing can be checked after them. The
    returned config leaves out the entries that have problems, so the data checks can run on the rest and
    report their problems together with these (`state_core.data.splits.run_split`).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            source,
            Problem(
                "(file)",
                "is not a text file (not UTF-8); an experiment TOML is text",
                "check the path of the experiment TOML",
            ),
        ) from None
    except OSError as err:
        hint = "check the path of the experiment TOML (--toml or data.kwargs.toml_config_path)"
        raise ConfigError(source, Problem("(file)", f"cannot read the TOML file: {err}", hint)) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            source, Problem("(syntax)", f"invalid TOML: {err}", "fix the TOML syntax at that line")
        ) from err
    return parse_experiment(data, source=source, base_dir=path.resolve().parent)


def experiment_from_dict(data: dict[str, Any], source: str, base_dir: Path) -> ExperimentConfig:
    """Validate parsed TOML data; relative dataset paths resolve against `base_dir`."""
    cfg, problems = parse_experiment(data, source, base_dir)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def parse_experiment(data: dict[str, Any], source: str, base_dir: Path) -> tuple[ExperimentConfig, list[Problem]]:
    """The usable part of parsed TOML data and every structural problem (see `read_experiment`)."""
    problems: list[Problem] = []
    for name in data:
        if name not in TABLES:
            problems.append(Problem(name, "unknown table", f"allowed tables: {', '.join(TABLES)}"))
    tables = {name: _table(data, name, problems) for name in TABLES}
    datasets = _parse_datasets(tables["datasets"], base_dir, problems)
    training = _parse_training(tables["training"], problems)
    zeroshot = _parse_zeroshot(tables["zeroshot"], problems)
    fewshot = _parse_fewshot(tables["fewshot"], problems)

    for key in sorted(set(zeroshot) & set(fewshot)):
        problems.append(
            Problem(
                f"zeroshot.{toml_key(*key)}",
                "this cell type is also listed under [fewshot]",
                "a cell type is either held out whole (zeroshot) or by perturbation (fewshot); keep one entry",
            )
        )
    used = [("training", ds, f"training.{ds}") for ds in training]
    used += [("zeroshot", ds, f"zeroshot.{toml_key(ds, ct)}") for ds, ct in zeroshot]
    used += [("fewshot", ds, f"fewshot.{toml_key(ds, ct)}") for ds, ct in fewshot]
    for _, dataset, key in used:
        if dataset not in tables["datasets"]:
            known = ", ".join(sorted(tables["datasets"])) or "(none)"
            problems.append(
                Problem(
                    key,
                    f"dataset {dataset!r} has no path in [datasets]",
                    f'add {dataset} = "<path>" to [datasets]; known: {known}',
                )
            )
    if not training and not fewshot and not problems:
        problems.append(
            Problem("training", "no dataset trains", 'mark at least one dataset as <name> = "train" in [training]')
        )
    # Keep only entries that can be checked against data: their dataset has a path, no zeroshot/fewshot clash.
    has_path = set(datasets)
    usable = ExperimentConfig(
        source=source,
        datasets=datasets,
        training=tuple(ds for ds in training if ds in has_path),
        zeroshot={k: v for k, v in zeroshot.items() if k[0] in has_path},
        fewshot={k: v for k, v in fewshot.items() if k[0] in has_path and k not in zeroshot},
    )
    return usable, problems


def _table(data: dict[str, Any], name: str, problems: list[Problem]) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.append(Problem(name, f"must be a table, got {type(value).__name__}", f"write it as [{name}]"))
        return {}
    return value


def _parse_datasets(table: dict[str, Any], base_dir: Path, problems: list[Problem]) -> dict[str, str]:
    datasets: dict[str, str] = {}
    for name, value in table.items():
        key = f"datasets.{name}"
        if "." in name:
            problems.append(Problem(key, "dataset names cannot contain '.'", "rename it, e.g. with '_' instead of '.'"))
        if not isinstance(value, str) or not value.strip():
            problems.append(
                Problem(key, f"must be a non-empty path string, got {value!r}", 'write name = "path/to/dir"')
            )
            continue
        datasets[name] = resolve_path(value.strip(), base_dir)
    return datasets


def resolve_path(value: str, base_dir: Path) -> str:
    """gs:// URIs and absolute paths unchanged; relative paths joined to the TOML's directory."""
    if value.startswith("gs://"):
        return value
    expanded = Path(value).expanduser()
    return str(expanded if expanded.is_absolute() else base_dir / expanded)


def _parse_training(table: dict[str, Any], problems: list[Problem]) -> tuple[str, ...]:
    training = []
    for name, value in table.items():
        if value != "train":
            problems.append(
                Problem(
                    f"training.{name}",
                    f'value must be "train", got {value!r}',
                    f'write {name} = "train", or remove the line to not train on it',
                )
            )
            continue
        training.append(name)
    return tuple(sorted(training))


def _split_key(table: str, raw: str, problems: list[Problem]) -> CellTypeKey | None:
    dataset, dot, cell_type = raw.partition(".")
    if not dot or not dataset or not cell_type:
        problems.append(
            Problem(
                f'{table}."{raw}"',
                "key must have the form dataset.cell_type",
                f'write "<dataset>.<cell type>", e.g. "{raw or "replogle"}.K562"',
            )
        )
        return None
    return dataset, cell_type


def _parse_zeroshot(table: dict[str, Any], problems: list[Problem]) -> dict[CellTypeKey, str]:
    zeroshot: dict[CellTypeKey, str] = {}
    for raw, value in table.items():
        key = _split_key("zeroshot", raw, problems)
        if key is None:
            continue
        if value not in HELD_OUT_SPLITS:
            hint = '"val" or "test"'
            if value == "train":
                hint += "; cell types of [training] datasets train by default, so drop this line"
            problems.append(
                Problem(f"zeroshot.{toml_key(*key)}", f'split must be "val" or "test", got {value!r}', hint)
            )
            continue
        zeroshot[key] = value
    return dict(sorted(zeroshot.items()))


def _parse_fewshot(table: dict[str, Any], problems: list[Problem]) -> dict[CellTypeKey, FewshotSplit]:
    fewshot: dict[CellTypeKey, FewshotSplit] = {}
    for raw, value in table.items():
        key = _split_key("fewshot", raw, problems)
        if key is None:
            continue
        where = f"fewshot.{toml_key(*key)}"
        if not isinstance(value, dict):
            problems.append(
                Problem(
                    where,
                    "must be a table with val/test lists",
                    f"write [fewshot.{toml_key(*key)}] val = [...] test = [...]",
                )
            )
            continue
        lists: dict[str, tuple[str, ...]] = {}
        for sub, perts in value.items():
            if sub not in HELD_OUT_SPLITS:
                problems.append(
                    Problem(
                        f"{where}.{sub}", "unknown key", "only val and test are allowed; unlisted perturbations train"
                    )
                )
            elif not isinstance(perts, list) or not all(isinstance(p, str) for p in perts):
                problems.append(
                    Problem(
                        f"{where}.{sub}",
                        f"must be a list of strings, got {perts!r}",
                        f'write {sub} = ["PERT1", "PERT2"]',
                    )
                )
            else:
                lists[sub] = tuple(dict.fromkeys(perts))  # drop repeats, keep order
        if not any(lists.values()) and not any(p.key.startswith(where) for p in problems):
            problems.append(
                Problem(
                    where,
                    "lists no val or test perturbations",
                    "add val = [...] and/or test = [...], or drop the entry",
                )
            )
            continue
        fewshot[key] = FewshotSplit(val=lists.get("val", ()), test=lists.get("test", ()))
    return dict(sorted(fewshot.items()))
