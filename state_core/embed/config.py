"""The `state emb fit` configuration: typed sections read from YAML or TOML, unknown keys rejected.

Example (YAML; TOML has the same structure):

    gene_embeddings: esm2_table.safetensors   # gene symbol -> vector (safetensors)
    output_dir: runs/se_small
    datasets:
      - {name: pbmc, path: pbmc.h5ad}
      - {name: k562, path: k562.h5ad, gene_column: gene_name}
    model: {d_model: 32, d_hid: 64, nhead: 4, nlayers: 2, output_dim: 32}
    data: {pad_length: 64, positives: 16, negatives: 16, shared: 16, batch_size: 8}
    optimizer: {max_lr: 1.0e-4}
    trainer: {max_steps: 50}

Every problem in the file is reported at once, with the key path and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from state_core.errors import ConfigError, Problem

INPUT_KINDS = ("raw", "log1p")
LOSSES = ("tabular", "mse")


@dataclass
class DatasetEntry:
    name: str
    path: str
    gene_column: str | None = None  # var column with gene symbols; default var_names
    input_kind: str | None = None  # raw | log1p; default data.input_kind


@dataclass
class ModelSection:
    d_model: int = 512
    d_hid: int = 1024
    nhead: int = 16
    nlayers: int = 8
    output_dim: int = 512
    dropout: float = 0.1


@dataclass
class DataSection:
    pad_length: int = 2048  # L incl. CLS
    positives: int = 512  # P
    negatives: int = 512  # N
    shared: int = 512  # S (tabular loss)
    compat: bool = False  # original sampling + CLS-count quirk (for continuing imported weights)
    input_kind: str = "raw"  # what the h5ad X holds; raw counts get log1p (after target_sum scaling, if set)
    target_sum: float | None = None  # library size to scale raw counts to; None = log1p of raw counts
    batch_size: int = 128
    val_fraction: float = 0.05
    num_workers: int = 0
    min_gene_coverage: float = 0.5


@dataclass
class LossSection:
    name: str = "tabular"
    dataset_weight: float = 1.0  # weight of the dataset-classification cross-entropy


@dataclass
class OptimizerSection:
    max_lr: float = 1e-5
    weight_decay: float = 0.01
    start_factor: float = 0.33  # warm-up starts at start_factor * max_lr
    warmup_fraction: float = 0.03  # of all optimizer steps
    min_lr_fraction: float = 0.3  # cosine floor as a fraction of max_lr
    max_grad_norm: float = 0.8
    gradient_accumulation_steps: int = 1


@dataclass
class TrainerSection:
    max_epochs: int = 16
    max_steps: int = -1  # optimizer steps; -1 = epochs decide
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str = "auto"  # auto = bf16-mixed on GPU, 32 on CPU
    strategy: str = "auto"  # DDP is chosen by Lightning for several GPUs
    val_check_interval: float = 1.0
    checkpoint_every_n_steps: int = 1000
    resume: bool = True  # continue from <output_dir>/checkpoints/last.ckpt when present


@dataclass
class SEFitConfig:
    gene_embeddings: str
    output_dir: str
    datasets: list[DatasetEntry]
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_fit_config(path: str | Path, overrides: list[str] | None = None) -> SEFitConfig:
    """Read `path` (YAML or TOML), apply `key.sub=value` overrides (values parsed as YAML), validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), Problem("--conf", "file does not exist", "pass the path of a YAML or TOML config"))
    text = path.read_text()
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigError(str(path), Problem("(file)", f"cannot parse: {err}", "fix the syntax")) from err
    raw = raw or {}
    problems: list[Problem] = []
    for item in overrides or []:
        apply_override(raw, item, problems)
    if problems:
        raise ConfigError(str(path), problems)
    cfg = parse_fit_config(raw, str(path))
    base = path.parent
    cfg.gene_embeddings = str(resolve(base, cfg.gene_embeddings))
    for entry in cfg.datasets:
        entry.path = str(resolve(base, entry.path))
    return cfg


def apply_override(raw: dict[str, Any], item: str, problems: list[Problem]) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        problems.append(Problem(item, "is not key=value", "write overrides as section.key=value"))
        return
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            problems.append(Problem(key, f"{part!r} is not a section", "override a key inside a section"))
            return
    node[parts[-1]] = yaml.safe_load(text)


def resolve(base: Path, value: str) -> Path | str:
    """Relative paths in a config are relative to the config file; URIs pass through."""
    if "://" in value or Path(value).is_absolute():
        return value
    return base / value


def parse_fit_config(raw: dict[str, Any], source: str) -> SEFitConfig:
    problems: list[Problem] = []
    cfg = build_dataclass(SEFitConfig, raw, "", problems)
    if cfg is not None:
        problems += semantic_problems(cfg)
    if problems or cfg is None:
        raise ConfigError(source, problems)
    return cfg


def semantic_problems(cfg: SEFitConfig) -> list[Problem]:
    out: list[Problem] = []
    if not cfg.datasets:
        out.append(Problem("datasets", "is empty", "list at least one {name, path} entry"))
    names = [d.name for d in cfg.datasets]
    if len(set(names)) != len(names):
        out.append(Problem("datasets", f"dataset names repeat: {names}", "give every dataset a unique name"))
    kinds = [("data.input_kind", cfg.data.input_kind)] + [
        (f"datasets[{i}].input_kind", d.input_kind) for i, d in enumerate(cfg.datasets) if d.input_kind is not None
    ]
    out += [
        Problem(k, f"{v!r} is not one of {INPUT_KINDS}", "say what X holds: raw or log1p")
        for k, v in kinds
        if v not in INPUT_KINDS
    ]
    if cfg.loss.name not in LOSSES:
        out.append(Problem("loss.name", f"{cfg.loss.name!r} is not one of {LOSSES}", "choose a supported loss"))
    if cfg.model.d_model % cfg.model.nhead:
        out.append(
            Problem(
                "model.nhead",
                f"d_model={cfg.model.d_model} is not divisible by nhead={cfg.model.nhead}",
                "pick a divisor",
            )
        )
    if cfg.data.pad_length < 2:
        out.append(Problem("data.pad_length", f"{cfg.data.pad_length} < 2", "use at least 2 (CLS + one gene)"))
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        out.append(Problem("data.val_fraction", f"{cfg.data.val_fraction} is outside [0, 1)", "use e.g. 0.05"))
    return out


def build_dataclass(cls: type, raw: Any, prefix: str, problems: list[Problem]) -> Any:
    """Recursively build `cls` from a mapping, collecting unknown/missing/mistyped keys in `problems`."""
    where = prefix or "(top level)"
    if not isinstance(raw, dict):
        problems.append(Problem(where, f"expected a mapping, got {type(raw).__name__}", "write it as key: value pairs"))
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {prefix + close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
            problems.append(Problem(prefix + str(key), "unknown key", hint))
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default:
                problems.append(Problem(key, "is required", "add it to the config"))
            continue
        values[name] = convert(hints[name], raw[name], key, problems)
    try:
        return cls(**values)
    except TypeError:
        return None


def convert(tp: Any, value: Any, key: str, problems: list[Problem]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], value, key, problems)
    if origin is list:
        if not isinstance(value, list):
            problems.append(Problem(key, f"expected a list, got {value!r}", "write it as a list"))
            return []
        return [convert(args[0], v, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key + ".", problems)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, (str, int, float)) and not isinstance(value, bool),
    }.get(tp, True)
    if not ok:
        problems.append(Problem(key, f"expected {tp.__name__}, got {value!r}", f"write a {tp.__name__}"))
        return value
    return tp(value) if tp in (float, str) else value
