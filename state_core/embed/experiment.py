"""The embed stage of the pipelines (`state_core.embed` owns it): the datasets of an experiment TOML made into
model inputs.

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

import tomllib
from dataclasses import dataclass
from pathlib import Path

from state_core.config.experiment import load_experiment
from state_core.errors import ConfigError, DataError, Problem
from state_core.config.toml_writer import dumps

METHODS = ("precomputed", "hvg", "se")
EXPERIMENT_TOML = "experiment.toml"


@dataclass(frozen=True)
class EmbedOptions:
    method: str = "precomputed"
    num_hvgs: int = 2000
    se_model_dir: str = ""  # SE run folder, only for method "se"
    se_layer: str = ""  # read raw counts from layers[se_layer] (e.g. "counts") instead of X; "" = X


def _raw_document(toml_path: Path) -> dict:
    """The TOML as written, so the rewrite keeps every table the user wrote."""
    return tomllib.loads(toml_path.read_text(encoding="utf-8"))


def _h5ad_files(location: str, cache_dir: Path) -> list[Path]:
    from state_core.storage import list_files, localize

    files = list_files(location)
    if not files:
        raise DataError(f"{location}: no .h5ad/.h5 files found; fix the path under [datasets] in the experiment TOML")
    return [localize(f, cache_dir) for f in files]


def _embed_file(source: Path, target: Path, options: EmbedOptions) -> None:
    if options.method == "hvg":
        from state_core.data.preprocess import preprocess_train

        preprocess_train(str(source), str(target), options.num_hvgs)
    else:
        from state_core.embed.transform import transform_h5ad

        transform_h5ad(options.se_model_dir, str(source), str(target), layer=options.se_layer or None, progress=False)


def embed_experiment(toml_path: str | Path, out_dir: str | Path, options: EmbedOptions) -> Path:
    """Embed every dataset of the experiment; return the path of the rewritten TOML inside `out_dir`."""
    if options.method not in METHODS:
        raise ConfigError(
            "embed", Problem("method", f"unknown embed method {options.method!r}", f"use one of {', '.join(METHODS)}")
        )
    if options.method == "se" and not options.se_model_dir:
        raise ConfigError("embed", Problem("se_model_dir", "empty", "give the SE run folder to embed with"))
    toml_path = _local_toml(str(toml_path), Path(out_dir) / ".cache")
    resolved = load_experiment(toml_path).datasets  # raises ConfigError listing every structural problem
    document = _raw_document(toml_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, str] = {}
    for name, source in resolved.items():
        if options.method == "precomputed":
            datasets[name] = source
            continue
        target_dir = out / name
        target_dir.mkdir(exist_ok=True)
        for file in _h5ad_files(source, out / ".cache"):
            _embed_file(file, target_dir / file.name, options)
        datasets[name] = name  # relative to the rewritten TOML, so the folder can move as one artifact
    document["datasets"] = datasets
    rewritten = out / EXPERIMENT_TOML
    rewritten.write_text(dumps(document))
    return rewritten


def _local_toml(toml_uri: str, cache_dir: Path) -> Path:
    from state_core.storage import localize

    return localize(toml_uri, cache_dir) if toml_uri.startswith("gs://") else Path(toml_uri)
