"""The `state tx train` configuration: typed sections, Hydra-style `key=value` overrides, strict keys.

The command line users know from the original README works as written:

    state tx train data.kwargs.toml_config_path=examples/fewshot.toml data.kwargs.embed_key=X_hvg \
        training.batch_size=8 model.kwargs.cell_set_len=64 model=pertsets wandb.tags="[test]" \
        output_dir=$HOME/state name=test

`model=<preset>` picks a row of `state_core.models.presets`; `model.kwargs.*` are checked by that preset.
Every other key is checked here: an unknown key is an error that names it and suggests the closest one.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from state_core.errors import ConfigError, Problem

OUTPUT_SPACES = ("gene", "all", "embedding")
MAPPING_STRATEGIES = ("random", "batch")


@dataclass
class DataKwargs:
    toml_config_path: str = ""
    embed_key: Optional[str] = "X_hvg"  # obsm key of model inputs/targets; None or "X" = the X matrix
    output_space: str = "gene"  # gene | all | embedding (see docs/training.md)
    pert_col: str = "gene"
    cell_type_key: str = "cell_type"
    batch_col: Optional[str] = "gem_group"
    control_pert: str = "non-targeting"
    basal_mapping_strategy: str = "random"  # random: control of the same cell type; batch: same batch too
    should_yield_control_cells: bool = True  # also train control -> control sets
    perturbation_features_file: Optional[str] = None  # safetensors {name: vector}; default one-hot
    split_seed: int = 0
    split_dir: Optional[str] = None  # reuse a split manifest made by `state data split`
    # Accepted for command-line compatibility with the original; the loader gathers in-process, so worker
    # processes only prefetch batches (0 = gather in the training process).
    num_workers: int = 0
    memory_budget_gb: float = 8.0  # above this the feature store streams from a memmap cache


@dataclass
class DataConfig:
    name: str = "perturbation"
    kwargs: DataKwargs = field(default_factory=DataKwargs)


@dataclass
class ModelConfig:
    name: str = "pertsets"
    kwargs: dict[str, Any] = field(default_factory=dict)  # validated by state_core.models.presets


@dataclass
class TrainingConfig:
    batch_size: int = 16  # cell sets per step
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    max_steps: int = 40000
    val_freq: int = 2000  # steps between validations
    ckpt_every_n_steps: int = 2000
    gradient_clip_val: float = 10.0
    train_seed: int = 42
    accelerator: str = "auto"  # auto | cpu | gpu
    devices: Any = "auto"  # auto | N | [ids]
    strategy: str = "auto"  # auto | ddp | ...
    precision: str = "auto"  # auto = bf16-mixed on GPUs and bf16-capable CPUs, else 32-true
    progress_bar: bool = True
    limit_val_batches: int = 50
    log_every_n_steps: int = 50  # steps between rows of version_0/metrics.csv
    num_threads: int = 0  # torch CPU threads; 0 = torch's default (one per core)
    # fp32 matmul precision (torch.set_float32_matmul_precision) while training: auto = medium on CPU, where
    # oneDNN's bf16 fp32-math mode measured 2.4x faster with ~1e-6 relative error, highest on GPU, where
    # medium means plain bf16 matmuls, also in the fp32 losses. arc-state sets medium everywhere.
    matmul_precision: str = "auto"  # auto | highest | high | medium
    keep_last_checkpoints: int = 2  # periodic step=N.ckpt files kept (last.ckpt and the best one come on top)


@dataclass
class WandbConfig:
    entity: Optional[str] = None
    project: str = "state"
    tags: list[str] = field(default_factory=list)
    local_wandb_dir: Optional[str] = None


@dataclass
class TrainConfig:
    name: str = "debug"
    output_dir: str = "./runs"
    overwrite: bool = False
    use_wandb: bool = False  # off by default; CSV logging is always on
    use_tensorboard: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() / self.name


GROUPS = ("data", "model", "training", "wandb")


def _normalise_override(item: str) -> str:
    """`model=pertsets` selects a preset (Hydra group syntax); strip a Hydra `+`/`++` prefix."""
    key, sep, value = item.partition("=")
    key = key.lstrip("+")
    if not sep:
        return item
    if key in GROUPS:
        if key != "model":
            raise ConfigError(
                "command line",
                Problem(
                    key,
                    f"'{key}={value}' selects a config group, only 'model=<preset>' is supported",
                    f"set individual keys instead, e.g. {key}.<key>=<value>",
                ),
            )
        key = "model.name"
    return f"{key}={value}"


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys += _valid_keys(node[k], full + ".")
    return keys


def parse_overrides(overrides: list[str], base: TrainConfig | None = None) -> TrainConfig:
    """Apply `key=value` overrides to `base` (defaults if None). All bad keys and values are reported together."""
    cfg, problems = read_overrides(overrides, base)
    problems += value_problems(cfg)
    if problems:
        raise ConfigError("state tx train config", problems)
    return cfg


def read_overrides(overrides: list[str], base: TrainConfig | None = None) -> tuple[TrainConfig, list[Problem]]:
    """The config built from the valid overrides, and a problem for each invalid one (values not checked:
    `state tx train` checks them together with the data, see `state_core.train.preflight`)."""
    schema = OmegaConf.structured(base or TrainConfig())
    valid = _valid_keys(schema)
    problems: list[Problem] = []
    merged = schema
    for item in overrides:
        if "=" not in item:
            problems.append(Problem(item, "not of the form key=value", "write it as e.g. training.max_steps=1000"))
            continue
        try:
            norm = _normalise_override(item)
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([norm]))
        except ConfigError as err:
            problems += err.problems
        except ConfigKeyError as err:
            key = item.partition("=")[0].lstrip("+")
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "run `state tx train --help` to list the keys"
            problems.append(Problem(key, "unknown config key", hint))
            del err
        except OmegaConfBaseException as err:
            key = item.partition("=")[0]
            problems.append(
                Problem(
                    key,
                    f"invalid value: {str(err).splitlines()[0]}",
                    "check the type of this key in `state tx train --help`",
                )
            )
    cfg: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    return cfg, problems


MATMUL_PRECISIONS = ("auto", "highest", "high", "medium")
PRECISIONS = ("auto", "32", "32-true", "64", "64-true", "16", "16-mixed", "16-true", "bf16", "bf16-mixed", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def value_problems(cfg: TrainConfig) -> list[Problem]:
    """Every problem of the values themselves (no file access); see `state_core.train.preflight` for the rest."""
    problems: list[Problem] = []
    kw = cfg.data.kwargs
    if not kw.toml_config_path and not kw.split_dir:
        problems.append(
            Problem(
                "data.kwargs.toml_config_path", "is required", "pass data.kwargs.toml_config_path=<experiment.toml>"
            )
        )
    if kw.output_space not in OUTPUT_SPACES:
        problems.append(
            Problem(
                "data.kwargs.output_space",
                f"{kw.output_space!r} is not one of {OUTPUT_SPACES}",
                "use gene, all or embedding",
            )
        )
    if kw.basal_mapping_strategy not in MAPPING_STRATEGIES:
        problems.append(
            Problem(
                "data.kwargs.basal_mapping_strategy",
                f"{kw.basal_mapping_strategy!r} is not one of {MAPPING_STRATEGIES}",
                "use random or batch",
            )
        )
    if kw.num_workers < 0:
        problems.append(
            Problem("data.kwargs.num_workers", f"{kw.num_workers} is negative", "use 0 or a positive integer")
        )
    if not math.isfinite(kw.memory_budget_gb) or kw.memory_budget_gb <= 0:
        problems.append(
            Problem(
                "data.kwargs.memory_budget_gb",
                f"{kw.memory_budget_gb} is not a positive number",
                "e.g. data.kwargs.memory_budget_gb=8",
            )
        )
    t = cfg.training
    for key in ("batch_size", "max_steps", "val_freq", "ckpt_every_n_steps", "log_every_n_steps"):
        if getattr(t, key) <= 0:
            problems.append(
                Problem(
                    f"training.{key}", f"{getattr(t, key)} is not positive", f"set training.{key}=<positive integer>"
                )
            )
    for key in ("warmup_steps", "limit_val_batches", "num_threads", "keep_last_checkpoints"):
        if getattr(t, key) < 0:
            problems.append(
                Problem(f"training.{key}", f"{getattr(t, key)} is negative", f"set training.{key}=0 or more")
            )
    # `not x > 0` is also true for NaN, which `x <= 0` lets through
    if not (math.isfinite(t.lr) and t.lr > 0):
        problems.append(Problem("training.lr", f"{t.lr} is not a positive finite number", "e.g. training.lr=1e-4"))
    for key in ("weight_decay", "gradient_clip_val"):
        value = getattr(t, key)
        if not (math.isfinite(value) and value >= 0):
            problems.append(
                Problem(
                    f"training.{key}",
                    f"{value} is not a finite number >= 0",
                    f"e.g. training.{key}=0 (0 = off)" if key == "gradient_clip_val" else f"e.g. training.{key}=0.01",
                )
            )
    if t.lr_schedule not in ("constant", "cosine"):
        problems.append(Problem("training.lr_schedule", f"{t.lr_schedule!r} is unknown", "use constant or cosine"))
    if str(t.precision) not in PRECISIONS:
        problems.append(
            Problem("training.precision", f"{t.precision!r} is unknown", f"use one of {', '.join(PRECISIONS)}")
        )
    if t.matmul_precision not in MATMUL_PRECISIONS:
        problems.append(
            Problem(
                "training.matmul_precision",
                f"{t.matmul_precision!r} is unknown",
                f"use one of {', '.join(MATMUL_PRECISIONS)}",
            )
        )
    problems += _device_problems(t)
    if not cfg.name or "/" in cfg.name or cfg.name in (".", ".."):
        problems.append(Problem("name", f"{cfg.name!r} is not a valid run name", "use a plain folder name"))
    return problems


def _device_problems(t: TrainingConfig) -> list[Problem]:
    problems: list[Problem] = []
    if t.accelerator not in ACCELERATORS:
        problems.append(
            Problem("training.accelerator", f"{t.accelerator!r} is unknown", f"use one of {', '.join(ACCELERATORS)}")
        )
    elif t.accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(
                Problem(
                    "training.accelerator",
                    f"{t.accelerator!r} but this machine has no usable CUDA GPU",
                    "use training.accelerator=auto (or cpu)",
                )
            )
    devices = t.devices
    ok = (
        devices == "auto"
        or (isinstance(devices, int) and not isinstance(devices, bool) and (devices > 0 or devices == -1))
        or (isinstance(devices, str) and devices.lstrip("-").isdigit() and (int(devices) > 0 or devices == "-1"))
        or (isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices))
    )
    if not ok:
        problems.append(
            Problem(
                "training.devices",
                f"{devices!r} is not a device count or list",
                "use auto, a positive count such as 1, -1 for all, or a list of ids such as [0,1]",
            )
        )
    return problems


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(to_yaml(cfg))


def load_config(path: Path) -> TrainConfig:
    """Read a resolved `config.yaml` of a run folder (safe YAML; unknown keys rejected)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(
            str(path),
            Problem(
                "config.yaml",
                f"cannot read: {str(err).splitlines()[0]}",
                "point to a run folder written by `state tx train`",
            ),
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            str(path),
            Problem(
                "config.yaml",
                f"holds a {type(raw).__name__}, not a mapping of keys",
                "point to a run folder written by `state tx train`",
            ),
        )
    schema = OmegaConf.structured(TrainConfig())
    try:
        merged = OmegaConf.merge(schema, OmegaConf.create(raw))
    except OmegaConfBaseException as err:
        raise ConfigError(
            str(path),
            Problem("config.yaml", str(err).splitlines()[0], "the file was not written by this version of state"),
        ) from None
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def describe() -> str:
    """The full default config, for `state tx train --help`."""
    return to_yaml(TrainConfig())
