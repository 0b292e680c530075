"""`state tx import_arc`: read a published arc-state ST run folder and write it as one of our run folders.

arc-state folder: `config.yaml`, `var_dims.pkl`, `pert_onehot_map.pt`, `batch_onehot_map.{pkl,torch}`,
`cell_type_onehot_map.{pkl,torch}`, `checkpoints/*.ckpt` (Lightning; hyper_parameters rebuild the model).
Everything is read with the restricted unpickler; the mapping onto our model is
`state_core.models.arc_import`. The result is `model.json`, `model.safetensors`, `vocab.json`, `config.yaml`
and `import_report.json` in `dst_dir`, written to a temp folder first and renamed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from state_core.config.train_config import DataConfig, DataKwargs, ModelConfig, TrainConfig, save_config
from state_core.data.vocab import Vocab
from state_core.errors import ArtifactError
from state_core.models.arc_import import ArcRun, build_imported_model, ordered_labels
from state_core.models.losses import LossConfig
from state_core.models.safe_unpickle import safe_pickle_load, safe_torch_load
from state_core.models.st import STConfig
from state_core.runs.layout import CONFIG_FILE, VOCAB_FILE
from state_core.runs.model_files import save_model


@dataclass
class ImportResult:
    run_dir: Path
    config: STConfig
    notes: list[str] = field(default_factory=list)


def _first_existing(src: Path, names: tuple[str, ...]) -> Path | None:
    return next((src / n for n in names if (src / n).exists()), None)


def _label_map(path: Path | None) -> dict[str, Tensor]:
    if path is None:
        return {}
    raw = safe_torch_load(path) if path.suffix != ".pkl" or _is_zip(path) else safe_pickle_load(path)
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path}: expected a dict name -> vector, got {type(raw).__name__}")
    return {str(k): torch.as_tensor(v, dtype=torch.float32).flatten() for k, v in raw.items()}


def _is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"PK"  # torch.save writes zip archives, even under a .pkl name


def read_arc_run(src_dir: str | Path, checkpoint: str = "final.ckpt") -> ArcRun:
    src = Path(src_dir)
    ckpt = src / "checkpoints" / checkpoint
    for required in (ckpt, src / "var_dims.pkl", src / "pert_onehot_map.pt"):
        if not required.exists():
            raise ArtifactError(
                f"{required} is missing: {src} is not a complete arc-state run folder "
                f"(fix: point to the folder holding config.yaml and checkpoints/)"
            )
    raw = safe_torch_load(ckpt)
    if not isinstance(raw, dict) or "state_dict" not in raw or "hyper_parameters" not in raw:
        raise ArtifactError(f"{ckpt}: not a Lightning checkpoint with state_dict and hyper_parameters")
    var_dims = (
        safe_pickle_load(src / "var_dims.pkl")
        if not _is_zip(src / "var_dims.pkl")
        else safe_torch_load(src / "var_dims.pkl")
    )
    return ArcRun(
        hparams=dict(raw["hyper_parameters"]),
        state_dict=dict(raw["state_dict"]),
        var_dims=dict(var_dims),
        pert_map=_label_map(src / "pert_onehot_map.pt"),
        batch_map=_label_map(
            _first_existing(src, ("batch_onehot_map.pkl", "batch_onehot_map.torch", "batch_onehot_map.pt"))
        ),
        cell_type_map=_label_map(
            _first_existing(src, ("cell_type_onehot_map.pkl", "cell_type_onehot_map.torch", "cell_type_onehot_map.pt"))
        ),
        checkpoint=ckpt,
        data_kwargs=_data_kwargs(src / "config.yaml"),
    )


def _data_kwargs(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ArtifactError(f"{path}: not valid YAML ({err})") from None
    return dict((cfg.get("data") or {}).get("kwargs") or {})


def import_arc_state_run(src_dir: str | Path, dst_dir: str | Path, checkpoint: str = "final.ckpt") -> ImportResult:
    """Convert an arc-state ST run folder into our run folder at `dst_dir` (which must not exist)."""
    dst = Path(dst_dir)
    if dst.exists():
        raise ArtifactError(f"{dst} already exists (fix: choose a new destination or delete it)")
    run = read_arc_run(src_dir, checkpoint)
    model, pert_names = build_imported_model(run)
    notes = []
    backbone_kwargs = run.hparams.get("transformer_backbone_kwargs") or {}
    if model.config.backbone == "gpt2" and backbone_kwargs.get("attn_implementation") != "eager":
        notes.append(
            "GPT2 backbone: arc-state ran it causally under sdpa attention; this import is bidirectional, "
            "so predictions can differ from arc-state's"
        )
    loss = LossConfig.from_dict(
        {
            k: run.hparams[k]
            for k in (
                "loss",
                "blur",
                "sinkhorn_weight",
                "energy_weight",
                "decoder_weight",
                "regularization",
                "detach_decoder",
            )
            if k in run.hparams
        }
    )
    kind = "state" if model.config.backbone == "llama" else "pertsets"
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent if dst.parent.exists() else None))
    try:
        save_model(tmp, model, kind, {"preset": kind, "model": model.config.to_dict(), "loss": loss.to_dict()})
        _write_vocab(tmp, run, pert_names, model.config)
        _write_train_config(tmp, run, kind, dst)
        report = {"source": str(Path(src_dir).resolve()), "checkpoint": str(run.checkpoint), "notes": notes}
        (tmp / "import_report.json").write_text(json.dumps(report, indent=2))
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportResult(dst, model.config, notes)


def _write_vocab(folder: Path, run: ArcRun, pert_names: list[str], config: STConfig) -> None:
    hp, dims, data = run.hparams, run.var_dims, run.data_kwargs
    embed_key = hp.get("embed_key")
    gene_names = [str(g) for g in (dims.get("gene_names") or hp.get("gene_names") or [])]
    features = (
        gene_names
        if embed_key in (None, "X_hvg") and len(gene_names) == config.input_dim
        else [f"{embed_key or 'X'}_{i}" for i in range(config.input_dim)]
    )
    Vocab(
        perturbations=tuple(pert_names),
        cell_types=tuple(ordered_labels(run.cell_type_map)),
        batches=tuple(ordered_labels(run.batch_map)),
        feature_names=tuple(features),
        gene_names=tuple(gene_names if config.gene_dim or embed_key in (None, "X_hvg") else ()),
        control_pert=str(hp.get("control_pert", "non-targeting")),
        pert_col=str(data.get("pert_col", "gene")),
        cell_type_key=str(data.get("cell_type_key", "cell_type")),
        batch_col=data.get("batch_col", "gem_group"),
        embed_key=embed_key or "X",
        output_space=config.output_space,
        pert_feature_dim=config.pert_dim,
    ).save(folder / VOCAB_FILE)


def _write_train_config(folder: Path, run: ArcRun, kind: str, dst: Path) -> None:
    hp, kw = run.hparams, run.data_kwargs
    data = DataKwargs(
        toml_config_path="",
        embed_key=hp.get("embed_key"),
        output_space=str(hp.get("output_space", "gene")),
        pert_col=str(kw.get("pert_col", "gene")),
        cell_type_key=str(kw.get("cell_type_key", "cell_type")),
        batch_col=kw.get("batch_col", "gem_group"),
        control_pert=str(hp.get("control_pert", "non-targeting")),
        basal_mapping_strategy=str(hp.get("basal_mapping_strategy", "random")),
    )
    cfg = TrainConfig(
        name=dst.name, output_dir=str(dst.parent), data=DataConfig(kwargs=data), model=ModelConfig(name=kind, kwargs={})
    )
    save_config(cfg, folder / CONFIG_FILE)
