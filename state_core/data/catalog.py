"""Which files an experiment uses, their labels, and the checks of the TOML against the data.

`scan_experiment` resolves each used dataset's path (folder, file, glob with `{a,b}`, `gs://`),
reads the pert / cell-type / batch labels of every file with h5py, and validates everything the
TOML claims about the data. All problems are collected into one `ConfigError`, so a user fixes a
config in one pass instead of one crash at a time.

Roles of a (dataset, cell type), decided by `role_of`:
  * zeroshot  -> every cell (perturbed and control) goes to the named split;
  * fewshot   -> listed perturbations go to val/test, the rest to train, controls divided;
  * training  -> a cell type of a `[training]` dataset that is not held out: all cells train;
  * unused    -> a cell type of a non-training dataset that is neither zeroshot nor fewshot.
"""

from __future__ import annotations

import difflib
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from state_core.config.experiment import ExperimentConfig, FewshotSplit, ObsColumns, toml_key
from state_core.data.h5ad import Labels, obs_columns, read_obs_labels
from state_core.errors import ConfigError, DataError, Problem
from state_core.storage import list_files, localize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellTypeRole:
    """How one (dataset, cell type) is used. `kind` is "train", "zeroshot" or "fewshot"."""

    kind: str
    split: str | None = None  # zeroshot split
    fewshot: FewshotSplit | None = None


@dataclass(frozen=True, eq=False)
class FileLabels:
    """The labels of one data file. `uri` is the path or gs:// URI as listed; `path` is local."""

    dataset: str
    path: Path
    n_cells: int
    pert: Labels
    cell_type: Labels
    batch: Labels | None
    uri: str = ""

    @property
    def stem(self) -> str:
        return self.path.name.rsplit(".", 1)[0]


def role_of(cfg: ExperimentConfig, dataset: str, cell_type: str) -> CellTypeRole | None:
    """The role of a cell type (see the module docstring); None when it is not used."""
    key = (dataset, cell_type)
    if key in cfg.zeroshot:
        return CellTypeRole("zeroshot", split=cfg.zeroshot[key])
    if key in cfg.fewshot:
        return CellTypeRole("fewshot", fewshot=cfg.fewshot[key])
    if dataset in cfg.training:
        return CellTypeRole("train")
    return None


def perturbed_split_masks(
    labels: FileLabels, rows: np.ndarray, role: CellTypeRole, control_code: int
) -> dict[str, np.ndarray]:
    """For the perturbed cells among `rows` (one cell type of one file): split name -> bool mask over
    `rows`. A fewshot perturbation listed in both val and test is in both masks."""
    codes = labels.pert.codes[rows]
    perturbed = (codes != control_code) & (codes >= 0)
    if role.kind == "train":
        return {"train": perturbed}
    if role.kind == "zeroshot":
        return {str(role.split): perturbed}
    assert role.fewshot is not None
    names = labels.pert.categories

    def listed(perts: tuple[str, ...]) -> np.ndarray:
        wanted = np.flatnonzero(np.isin(names, list(perts)))
        return perturbed & np.isin(codes, wanted)

    val, test = listed(role.fewshot.val), listed(role.fewshot.test)
    return {"train": perturbed & ~val & ~test, "val": val, "test": test}


def scan_experiment(
    cfg: ExperimentConfig, columns: ObsColumns, cache_dir: str | Path | None = None
) -> list[FileLabels]:
    """Labels of every file of every used dataset, sorted by (dataset, file). Raises one
    `ConfigError` listing every problem found (see `validate_against_data`)."""
    unused = sorted(set(cfg.datasets) - set(cfg.used_datasets()))
    if unused:
        log.warning(
            "%s: datasets %s are listed in [datasets] but not used by [training], [zeroshot] or [fewshot]",
            cfg.source,
            ", ".join(unused),
        )
    problems: list[Problem] = []
    files: list[FileLabels] = []
    broken: set[str] = set()  # datasets with unreadable files: their label checks would only echo that
    for dataset in cfg.used_datasets():
        before = len(problems)
        files.extend(_scan_dataset(cfg, dataset, columns, cache_dir, problems))
        if len(problems) > before:
            broken.add(dataset)
    problems.extend(validate_against_data(cfg, columns, [f for f in files if f.dataset not in broken]))
    if problems:
        raise ConfigError(cfg.source, problems)
    return files


def _scan_dataset(
    cfg: ExperimentConfig, dataset: str, columns: ObsColumns, cache_dir: str | Path | None, problems: list[Problem]
) -> list[FileLabels]:
    key = f"datasets.{dataset}"
    pattern = cfg.datasets[dataset]
    uris = list_files(pattern)
    if not uris:
        problems.append(
            Problem(
                key,
                f"{pattern!r} matches no .h5ad/.h5 file",
                "point it at a folder, a file or a glob that matches data files",
            )
        )
        return []
    stems: dict[str, list[str]] = defaultdict(list)
    for uri in uris:
        stems[Path(uri).name.rsplit(".", 1)[0]].append(uri)
    for stem, same in sorted(stems.items()):
        if len(same) > 1:
            problems.append(
                Problem(
                    key,
                    f"several files share the name {stem!r}: {', '.join(same)}",
                    "rename them or narrow the pattern",
                )
            )
    scanned = []
    for uri in uris:
        try:
            scanned.append(_read_file_labels(dataset, uri, columns, cache_dir))
        except _MissingColumns as missing:
            problems.append(Problem(key, str(missing), missing.hint))
        except DataError as err:
            problems.append(
                Problem(key, str(err), "check the file; it must be an AnnData .h5ad written by anndata >= 0.8")
            )
    return scanned


class _MissingColumns(Exception):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def _read_file_labels(dataset: str, uri: str, columns: ObsColumns, cache_dir: str | Path | None) -> FileLabels:
    path = localize(uri, cache_dir)
    available = obs_columns(path)
    wanted = {"--pert-col": columns.pert_col, "--cell-type-key": columns.cell_type_key}
    if columns.batch_col is not None:
        wanted["--batch-col"] = columns.batch_col
    absent = {flag: col for flag, col in wanted.items() if col not in available}
    if absent:
        listed = ", ".join(f"{col!r}" for col in absent.values())
        flags = ", ".join(absent)
        raise _MissingColumns(
            f"{uri}: obs lacks column(s) {listed}; available: {', '.join(map(repr, available)) or '(none)'}",
            f"pass the right names with {flags}",
        )
    pert = read_obs_labels(path, columns.pert_col)
    cell_type = read_obs_labels(path, columns.cell_type_key)
    batch = read_obs_labels(path, columns.batch_col) if columns.batch_col is not None else None
    return FileLabels(
        dataset=dataset, path=path, n_cells=len(pert), pert=pert, cell_type=cell_type, batch=batch, uri=uri
    )


def present_cell_types(files: list[FileLabels]) -> list[str]:
    """Cell types with at least one cell in any of `files`, sorted."""
    found: set[str] = set()
    for f in files:
        counts = np.bincount(f.cell_type.codes[f.cell_type.codes >= 0], minlength=len(f.cell_type.categories))
        found.update(f.cell_type.categories[counts > 0].tolist())
    return sorted(found)


def validate_against_data(cfg: ExperimentConfig, columns: ObsColumns, files: list[FileLabels]) -> list[Problem]:
    """Problems between the TOML and the labels: control label present in every file, named cell
    types and fewshot perturbations present, and controls available for every split that has
    perturbed cells of a cell type (per file: control pools never cross files)."""
    problems: list[Problem] = []
    by_dataset: dict[str, list[FileLabels]] = defaultdict(list)
    for f in files:
        by_dataset[f.dataset].append(f)
        if f.pert.code_of(columns.control_pert) < 0:
            close = difflib.get_close_matches(columns.control_pert, f.pert.categories.tolist(), n=3)
            suggestion = f"; close: {', '.join(close)}" if close else ""
            problems.append(
                Problem(
                    f"datasets.{f.dataset}",
                    f"{f.uri}: control label {columns.control_pert!r} not found in obs[{columns.pert_col!r}]",
                    f"pass --control-pert with the file's control label{suggestion}",
                )
            )
    held_out = [("zeroshot", key) for key in cfg.zeroshot] + [("fewshot", key) for key in cfg.fewshot]
    for table, (dataset, cell_type) in held_out:
        if dataset not in by_dataset:
            continue
        available = present_cell_types(by_dataset[dataset])
        if cell_type not in available:
            problems.append(
                Problem(
                    f"{table}.{toml_key(dataset, cell_type)}",
                    f"cell type {cell_type!r} has no cells in dataset {dataset!r} (column {columns.cell_type_key!r})",
                    f"available cell types: {', '.join(available) or '(none)'}",
                )
            )
    for (dataset, cell_type), few in cfg.fewshot.items():
        if dataset in by_dataset:
            problems.extend(_check_fewshot_perts(dataset, cell_type, few, by_dataset[dataset], columns))
    problems.extend(_check_controls(cfg, columns, files))
    return problems


def _perts_of_cell_type(files: list[FileLabels], cell_type: str) -> set[str]:
    found: set[str] = set()
    for f in files:
        rows = f.cell_type.codes == f.cell_type.code_of(cell_type)
        codes = np.unique(f.pert.codes[rows])
        found.update(f.pert.categories[codes[codes >= 0]].tolist())
    return found


def _check_fewshot_perts(
    dataset: str, cell_type: str, few: FewshotSplit, files: list[FileLabels], columns: ObsColumns
) -> list[Problem]:
    present = _perts_of_cell_type(files, cell_type)
    problems = []
    for split, perts in (("val", few.val), ("test", few.test)):
        for pert in perts:
            key = f"fewshot.{toml_key(dataset, cell_type)}.{split}"
            if pert == columns.control_pert:
                problems.append(
                    Problem(key, f"{pert!r} is the control label", "controls are divided automatically; remove it")
                )
            elif pert not in present:
                close = difflib.get_close_matches(pert, sorted(present), n=3)
                hint = (
                    f"did you mean {', '.join(close)}?"
                    if close
                    else f"{len(present)} perturbations exist in {cell_type}"
                )
                problems.append(
                    Problem(key, f"perturbation {pert!r} has no {cell_type} cells in dataset {dataset!r}", hint)
                )
    return problems


def _check_controls(cfg: ExperimentConfig, columns: ObsColumns, files: list[FileLabels]) -> list[Problem]:
    """No silent zero controls: each split with perturbed cells of a cell type in a file needs at
    least one control of that cell type in that file (fewshot: one per such split)."""
    problems = []
    for f in files:
        control_code = f.pert.code_of(columns.control_pert)
        if control_code < 0:
            continue  # reported above as a missing control label
        for ct_code, cell_type in enumerate(f.cell_type.categories.tolist()):
            role = role_of(cfg, f.dataset, cell_type)
            rows = np.flatnonzero(f.cell_type.codes == ct_code)
            if role is None or rows.size == 0:
                continue
            splits = [s for s, mask in perturbed_split_masks(f, rows, role, control_code).items() if mask.any()]
            n_controls = int(np.count_nonzero(f.pert.codes[rows] == control_code))
            if splits and n_controls < len(splits):
                where = toml_key(f.dataset, cell_type)
                problems.append(
                    Problem(
                        f"datasets.{f.dataset}",
                        f"{f.uri}: cell type {where} has perturbed cells in {', '.join(splits)} but only "
                        f"{n_controls} {columns.control_pert!r} control cell(s)",
                        "add control cells of this cell type to the file, or remove the cell type's cells; "
                        "a model cannot learn a transition without a control pool",
                    )
                )
    return problems
