"""The run folder: what `state tx train` writes and what predict, infer and export read back.

    <output_dir>/<name>/
      config.yaml          resolved TrainConfig
      vocab.json           perturbations, cell types, batches, feature and gene names, columns
      model.json           model kind + its config (enough to rebuild the nn.Module)
      model.safetensors    final weights (buffers included: perturbation table, baseline statistics)
      split/               split manifest used for this run
      checkpoints/         last.ckpt, step=N-val_loss=X.ckpt, final.ckpt (real files, weights_only-safe)
      version_0/metrics.csv

Nothing here is pickled: checkpoints hold only tensors, numbers and strings and load with
`torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from state_core.atomic import atomic_path, atomic_write_text
from state_core.config.train_config import TrainConfig, load_config
from state_core.data.vocab import Vocab
from state_core.errors import ArtifactError
from state_core.models.baselines import build_model
from state_core.models.st import STConfig

MODEL_FORMAT = 1
CONFIG_FILE = "config.yaml"
VOCAB_FILE = "vocab.json"
MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
SPLIT_DIR = "split"
CHECKPOINT_DIR = "checkpoints"


@dataclass
class LoadedRun:
    run_dir: Path
    model: nn.Module
    vocab: Vocab
    config: TrainConfig
    model_kind: str
    model_config: dict[str, Any]  # STConfig as a dict
    loss_config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return f"{self.config.name}"


def save_model(run_dir: Path, model: nn.Module, kind: str, resolved: dict[str, Any]) -> None:
    """Write `model.json` ({kind, model: STConfig, loss}) and `model.safetensors` (atomically, weights first)."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": str(MODEL_FORMAT), "kind": kind})
    atomic_write_text(run_dir / MODEL_FILE, json.dumps({"format": MODEL_FORMAT, "kind": kind, **resolved}, indent=2))


def read_model_description(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MODEL_FILE
    if not path.exists():
        raise ArtifactError(f"{run_dir}: no {MODEL_FILE}; this is not a finished run folder of `state tx train` "
                            f"(fix: point to <output_dir>/<name>, or finish/resume the training run)")
    desc = json.loads(path.read_text())
    if desc.get("format") != MODEL_FORMAT:
        raise ArtifactError(f"{path}: model format {desc.get('format')!r} is not supported (expected {MODEL_FORMAT})")
    return desc


def checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning checkpoint, loaded without unpickling arbitrary objects."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # noqa: BLE001 - torch raises several types for unsafe/corrupt files
        raise ArtifactError(f"checkpoint {path} cannot be loaded safely: {str(err).splitlines()[0]}") from None
    state = ckpt.get("state_dict", ckpt)
    prefix = "model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} or state


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path | None:
    """`final` -> model.safetensors (None); `last`/`best`/file name/path -> a .ckpt file."""
    if checkpoint in ("final", WEIGHTS_FILE):
        return None
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    if checkpoint == "best":
        candidates = sorted(ckpt_dir.glob("step=*-val_loss=*.ckpt"), key=lambda p: float(p.stem.split("val_loss=")[1]))
        if not candidates:
            raise ArtifactError(f"{ckpt_dir}: no best checkpoint (no validation ran); use --checkpoint final or last")
        return candidates[0]
    name = checkpoint if checkpoint.endswith(".ckpt") else f"{checkpoint}.ckpt"
    path = Path(name) if Path(name).is_absolute() else ckpt_dir / name
    if not path.exists():
        have = ", ".join(sorted(p.name for p in ckpt_dir.glob("*.ckpt"))) or "none"
        raise ArtifactError(f"checkpoint {path} does not exist (available: {have}; or use --checkpoint final)")
    return path


def load_run(run_dir: str | Path, checkpoint: str = "final", device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the trained model of a run folder in eval mode, with its vocabularies and config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run folder {run_dir} does not exist (fix: pass <output_dir>/<name> of a training run)")
    desc = read_model_description(run_dir)
    kind = desc["kind"]
    vocab = Vocab.load(run_dir / VOCAB_FILE)
    config = load_config(run_dir / CONFIG_FILE)
    model = build_model(kind, STConfig.from_dict(desc["model"], source=str(run_dir / MODEL_FILE)))
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    state = load_file(str(run_dir / WEIGHTS_FILE)) if ckpt is None else checkpoint_state_dict(ckpt)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ArtifactError(f"{ckpt or run_dir / WEIGHTS_FILE}: weights do not match the model in {MODEL_FILE} "
                            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.to(device).eval()
    return LoadedRun(run_dir=run_dir, model=model, vocab=vocab, config=config, model_kind=kind,
                     model_config=desc["model"], loss_config=desc.get("loss", {}))
