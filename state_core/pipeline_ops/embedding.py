"""The pipeline's embed stage: turn the datasets of an experiment TOML into model inputs.

The output is a self-contained folder: the embedded h5ad files under `<out>/<dataset>/` (same file names,
same rows, so a split manifest made on the inputs still applies) and `<out>/experiment.toml`, a copy of the
input TOML whose `[datasets]` point at them.

Methods:
  precomputed  the inputs already hold the features (e.g. `obsm["X_hvg"]`); only the TOML is rewritten,
               with absolute dataset locations.
  hvg          `state_core.data.preprocess.preprocess_train` per file (normalise, log1p, HVGs).
  se           `state_core.embed.transform.transform_h5ad` per file with a fitted SE model.
"""

from __future__ import annotations

import glob
import tomllib
from dataclasses import dataclass
from pathlib import Path

from state_core.errors import ConfigError, DataError, Problem
from state_core.pipeline_ops.toml_text import dumps

METHODS = ("precomputed", "hvg", "se")
EXPERIMENT_TOML = "experiment.toml"


@dataclass(frozen=True)
class EmbedOptions:
    method: str = "precomputed"
    num_hvgs: int = 2000
    se_model_dir: str = ""  # SE run folder, only for method "se"


def _read_toml(toml_path: Path) -> dict:
    try:
        document = tomllib.loads(toml_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise DataError(f"{toml_path}: cannot read the experiment TOML ({err}); pass an existing, valid TOML") from err
    if not isinstance(document.get("datasets"), dict) or not document["datasets"]:
        raise ConfigError(str(toml_path), Problem("datasets", "missing or empty",
                                                  "add a [datasets] table: name = \"path/to/h5ad_dir\""))
    return document


def _absolute(location: str, toml_dir: Path) -> str:
    """Dataset locations are relative to the TOML's folder unless absolute or a URI."""
    if "://" in location or Path(location).is_absolute():
        return location
    return str((toml_dir / location).resolve())


def _h5ad_files(location: str) -> list[Path]:
    path = Path(location)
    if path.is_dir():
        files = sorted(path.glob("*.h5ad"))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(location) if p.endswith(".h5ad"))
    if not files:
        raise DataError(f"{location}: no .h5ad files found; fix the path under [datasets] in the experiment TOML")
    return files


def _embed_file(source: Path, target: Path, options: EmbedOptions) -> None:
    if options.method == "hvg":
        from state_core.data.preprocess import preprocess_train

        preprocess_train(str(source), str(target), options.num_hvgs)
    else:
        from state_core.embed.transform import transform_h5ad

        transform_h5ad(options.se_model_dir, str(source), str(target))


def embed_experiment(toml_path: str | Path, out_dir: str | Path, options: EmbedOptions) -> Path:
    """Embed every dataset of the experiment; return the path of the rewritten TOML inside `out_dir`."""
    if options.method not in METHODS:
        raise ConfigError("embed", Problem("method", f"unknown embed method {options.method!r}",
                                           f"use one of {', '.join(METHODS)}"))
    if options.method == "se" and not options.se_model_dir:
        raise ConfigError("embed", Problem("se_model_dir", "empty", "give the SE run folder to embed with"))
    toml_path = Path(toml_path)
    document = _read_toml(toml_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, str] = {}
    for name, location in document["datasets"].items():
        source = _absolute(str(location), toml_path.parent)
        if options.method == "precomputed":
            datasets[name] = source
            continue
        if "://" in source:
            from state_core.storage import localize

            source = str(localize(source, out / ".cache"))
        target_dir = out / name
        target_dir.mkdir(exist_ok=True)
        for file in _h5ad_files(source):
            _embed_file(file, target_dir / file.name, options)
        datasets[name] = name  # relative to the rewritten TOML, so the folder can move as one artifact
    document["datasets"] = datasets
    rewritten = out / EXPERIMENT_TOML
    rewritten.write_text(dumps(document))
    return rewritten
