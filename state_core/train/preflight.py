"""One validation pass before `state tx train` writes anything.

Config values, the experiment TOML against its data (columns, labels, a non-empty train split), NaN/Inf in
the features and targets, `model.kwargs` against the data's dimensions, devices/precision and the output
folder are all checked here; every problem goes into one `ConfigError`. Only then does the run folder
appear, so a failed run leaves nothing that a re-run could trip on. The model config is resolved here, once
(preset + data dims + `model.kwargs`); the data module and the model are both built from that result.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from state_core.config.experiment import ObsColumns, read_experiment
from state_core.config.train_config import TrainConfig, load_config, value_problems
from state_core.data.features import nonfinite_message
from state_core.data.splits import SplitManifest, build_split_manifest
from state_core.data.vocab import Vocab, gene_target_key
from state_core.errors import ConfigError, Problem, StateError
from state_core.models.presets import DataDims, ResolvedModelConfig, resolve_model_config
from state_core.runs.layout import CHECKPOINT_DIR, CONFIG_FILE, SPLIT_DIR, VOCAB_FILE
from state_core.train.data_setup import RunData, RunInputs, build_run_vocab, read_run_inputs, with_datamodule
from state_core.train.model_setup import data_dims

SOURCE = "state tx train"


@dataclass
class TrainPlan:
    """What validation found: the data of the run and whether it resumes an earlier one."""

    run_dir: Path
    data: RunData  # its data module uses model.model.cell_set_len
    model: ResolvedModelConfig
    resume_from: Path | None  # checkpoints/last.ckpt of the run being resumed


def columns_of(cfg: TrainConfig) -> ObsColumns:
    kw = cfg.data.kwargs
    return ObsColumns(
        pert_col=kw.pert_col, cell_type_key=kw.cell_type_key, batch_col=kw.batch_col, control_pert=kw.control_pert
    )


def _problems_of(err: StateError, key: str) -> list[Problem]:
    if isinstance(err, ConfigError):
        return [
            Problem(
                f"{err.source}: {p.key}" if err.source not in (SOURCE, "model.kwargs") else p.key, p.message, p.hint
            )
            for p in err.problems
        ]
    text = str(err)
    return [Problem(key, text.splitlines()[0], "\n      ".join(text.splitlines()[1:]).replace("fix: ", ""))]


def _output_problems(cfg: TrainConfig) -> list[Problem]:
    out = Path(cfg.output_dir).expanduser()
    run_dir = cfg.run_dir
    for path, key in ((out, "output_dir"), (run_dir, "name")):
        if path.exists() and not path.is_dir():
            return [Problem(key, f"{path} exists and is a file, not a folder", "choose another output_dir or name")]
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return [Problem("output_dir", f"{existing} is not writable", "choose a folder you can write to")]
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / CONFIG_FILE).is_file() and not cfg.overwrite:
        return [
            Problem(
                "name",
                f"{run_dir} exists and is not a run folder of `state tx train`",
                "choose another name, or pass overwrite=true to replace it",
            )
        ]
    return []


def _resume_point(cfg: TrainConfig) -> tuple[Path | None, list[Problem]]:
    last = cfg.run_dir / CHECKPOINT_DIR / "last.ckpt"
    if cfg.overwrite or not last.is_file():
        return None, []
    try:
        saved = load_config(cfg.run_dir / CONFIG_FILE)
    except ConfigError as err:
        return None, _problems_of(err, "name")
    if saved.model != cfg.model or saved.data != cfg.data:
        return None, [
            Problem(
                "name",
                f"{cfg.run_dir} holds a run with a different model/data config; resume needs the same config",
                "pass overwrite=true to start over, or a new name=...",
            )
        ]
    return last, []


def _manifest(cfg: TrainConfig) -> tuple[SplitManifest | None, list[Problem]]:
    kw = cfg.data.kwargs
    if kw.split_dir:
        try:
            manifest = SplitManifest.load(Path(kw.split_dir))
        except StateError as err:
            return None, _problems_of(err, "data.kwargs.split_dir")
        empty = [
            Problem(
                "data.kwargs.split_dir",
                f"{kw.split_dir}: the train split has no cells",
                "pass the split folder of an experiment whose train split has cells",
            )
        ]
        return manifest, empty if manifest.n_cells("train") == 0 else []
    if not Path(kw.toml_config_path).is_file():
        return None, [
            Problem(
                "data.kwargs.toml_config_path",
                f"{kw.toml_config_path} does not exist or is not a file",
                "pass the path of an experiment TOML",
            )
        ]
    try:
        experiment, problems = read_experiment(kw.toml_config_path)
    except ConfigError as err:
        return None, _problems_of(err, "data.kwargs.toml_config_path")
    try:
        manifest = build_split_manifest(experiment, columns_of(cfg), seed=kw.split_seed)
    except StateError as err:
        return None, [Problem(f"{experiment.source}: {p.key}", p.message, p.hint) for p in problems] + _problems_of(
            err, "data.kwargs.toml_config_path"
        )
    problems = [Problem(f"{experiment.source}: {p.key}", p.message, p.hint) for p in problems]
    if manifest.n_cells("train") == 0:
        problems.append(
            Problem(
                "data.kwargs.toml_config_path",
                f"{experiment.source}: the train split has no cells",
                "list a dataset under [training] whose cell types are not all held out",
            )
        )
    return manifest, problems


def _same_split(saved: SplitManifest, fresh: SplitManifest) -> bool:
    if len(saved.files) != len(fresh.files):
        return False
    return all(
        a.path == b.path and all(np.array_equal(a.rows(s), b.rows(s)) for s in ("train", "val", "test"))
        for a, b in zip(saved.files, fresh.files)
    )


def _finite_problems(manifest: SplitManifest, vocab: Vocab) -> list[Problem]:
    keys = [vocab.embed_key]
    gene_key = gene_target_key(vocab.embed_key, vocab.output_space)
    if gene_key and gene_key not in keys:
        keys.append(gene_key)
    problems = []
    for entry in manifest.files:
        rows = np.unique(np.concatenate([entry.train, entry.val, entry.test]))
        for key in keys:
            message = nonfinite_message(entry.path, key, rows)
            if message:
                head, _, fix = message.partition("; fix: ")
                problems.append(
                    Problem("data.kwargs.embed_key" if key == vocab.embed_key else f"targets ({key})", head, fix)
                )
    return problems


def _resolve_model(cfg: TrainConfig, inputs: RunInputs | None) -> tuple[ResolvedModelConfig | None, list[Problem]]:
    """The model config of the run (None with problems): `model.kwargs` against the data's dims; with no
    usable data (its problems are reported already) against stand-in dims, so unknown keys and bad values
    still show in the same pass."""
    kw = cfg.data.kwargs
    dims = (
        data_dims(inputs)
        if inputs is not None
        else DataDims(
            input_dim=8,
            output_dim=8,
            n_perturbations=2,
            n_batches=1,
            n_cell_types=1,
            output_space=kw.output_space,
            embed_key=None if kw.embed_key in (None, "X") else kw.embed_key,
        )
    )
    kwargs = dict(cfg.model.kwargs)
    found: list[Problem] = []
    # the preset check stops at unknown keys; check the rest again without them so every problem shows at once
    for _ in range(2):
        try:
            resolved = resolve_model_config(cfg.model.name, dims, kwargs, source="model.kwargs")
            return (resolved if inputs is not None and not found else None), found
        except ConfigError as err:
            found += [_with_suggestion(_under_kwargs(p)) for p in err.problems]
            unknown = {p.key.rpartition(".")[2] for p in err.problems if p.message == "unknown model key"}
            if not unknown:
                break
            kwargs = {k: v for k, v in kwargs.items() if k not in unknown}
        except (TypeError, ValueError) as err:
            found.append(
                Problem("model.kwargs", f"a value has the wrong type ({err})", "see docs/training.md for the types")
            )
            break
    return None, found


def _under_kwargs(problem: Problem) -> Problem:
    if problem.key.startswith("model"):
        return problem
    return Problem(f"model.kwargs.{problem.key}", problem.message, problem.hint)


def _with_suggestion(problem: Problem) -> Problem:
    """`model.kwargs.hidden_size: unknown model key` -> add "did you mean hidden_dim?"."""
    from state_core.models.presets import _known_keys

    prefix, _, name = problem.key.rpartition(".")
    if problem.message != "unknown model key" or prefix != "model.kwargs":
        return problem
    close = difflib.get_close_matches(name, sorted(_known_keys()), n=3, cutoff=0.5)
    if "hidden" in name and "hidden_dim" not in close:
        close.insert(0, "hidden_dim")
    if not close:
        return problem
    return Problem(problem.key, problem.message, f"did you mean {', '.join(close)}?")


def preflight(cfg: TrainConfig, known: list[Problem] | None = None) -> TrainPlan:
    """Check everything `train_st` needs; raise one ConfigError listing every problem (`known` ones, e.g. bad
    overrides, first). Writes nothing."""
    problems = list(known or []) + value_problems(cfg) + _output_problems(cfg)
    resume_from = None
    if not any(p.key in ("output_dir", "name") for p in problems):
        resume_from, resume_problems = _resume_point(cfg)
        problems += resume_problems
    manifest, split_problems = _manifest(cfg)
    problems += split_problems
    data: RunData | None = None
    model: ResolvedModelConfig | None = None
    model_checked = False
    if manifest is not None and not split_problems:
        if resume_from is not None:
            try:
                saved = SplitManifest.load(cfg.run_dir / SPLIT_DIR)
                if not _same_split(saved, manifest):
                    problems.append(
                        Problem(
                            "data.kwargs.toml_config_path",
                            f"the experiment TOML or its data changed "
                            f"since {cfg.run_dir} started, so its split no longer matches",
                            "pass overwrite=true to start over with the new split, or a new name=...",
                        )
                    )
                vocab: Vocab | None = Vocab.load(cfg.run_dir / VOCAB_FILE)
            except StateError as err:
                problems += _problems_of(err, "name")
                vocab = None
        else:
            try:
                vocab = build_run_vocab(cfg, manifest)
            except StateError as err:
                problems += _problems_of(err, "data.kwargs")
                vocab = None
        if vocab is not None:
            try:
                problems += _finite_problems(manifest, vocab)
                inputs = read_run_inputs(cfg, manifest, vocab)
                model, model_problems = _resolve_model(cfg, inputs)
                problems += model_problems
                model_checked = True
                if model is not None:
                    data = with_datamodule(cfg, inputs, model.model.cell_set_len)
            except StateError as err:
                problems += _problems_of(err, "data.kwargs")
    if not model_checked:
        problems += _resolve_model(cfg, None)[1]
    if problems:
        raise ConfigError(SOURCE, problems)
    return TrainPlan(run_dir=cfg.run_dir, data=data, model=model, resume_from=resume_from)
