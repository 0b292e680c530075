"""The run folder: what `state tx train` writes and what predict, infer and export read back.

    <output_dir>/<name>/
      config.yaml          resolved TrainConfig
      vocab.json           perturbations, cell types, batches, feature and gene names, columns
      model.json           model kind + its config (enough to rebuild the nn.Module); written at the start
      model.safetensors    final weights (buffers included: perturbation table, baseline statistics)
      split/               split manifest used for this run
      checkpoints/         last.ckpt (resumable), the last few step=N.ckpt, the best step=N-val_loss=X.ckpt,
                           final.ckpt (weights only); all real files, weights_only-safe
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


def save_model_description(run_dir: Path, kind: str, resolved: dict[str, Any]) -> None:
    """Write `model.json` ({kind, model: STConfig, loss}): written when training starts, so that every
    checkpoint of the run can be loaded while it is still running or after it was stopped."""
    atomic_write_text(Path(run_dir) / MODEL_FILE, json.dumps({"format": MODEL_FORMAT, "kind": kind, **resolved}, indent=2))


def save_model(run_dir: Path, model: nn.Module, kind: str, resolved: dict[str, Any]) -> None:
    """Write `model.safetensors` and `model.json` (atomically, weights first)."""
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": str(MODEL_FORMAT), "kind": kind})
    save_model_description(run_dir, kind, resolved)


def read_model_description(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise ArtifactError(f"{run_dir}: no {MODEL_FILE}; this is not a run folder of `state tx train` "
                            f"(fix: point to <output_dir>/<name> of a run that has started training)")
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path}: cannot be read as JSON ({str(err).splitlines()[0]}); the run folder is damaged "
                            f"(fix: re-run `state tx train` with overwrite=true)") from None
    if not isinstance(desc, dict) or desc.get("format") != MODEL_FORMAT:
        found = desc.get("format") if isinstance(desc, dict) else type(desc).__name__
        raise ArtifactError(f"{path}: model format {found!r} is not supported (expected {MODEL_FORMAT})")
    for key in ("kind", "model"):
        if key not in desc:
            raise ArtifactError(f"{path}: key {key!r} is missing; the run folder is damaged "
                                f"(fix: re-run `state tx train` with overwrite=true)")
    return desc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; a missing, unreadable, truncated or foreign file is one ArtifactError."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except PermissionError:
        raise ArtifactError(f"{path}: permission denied (fix: make the file readable)") from None
    except Exception as err:  # noqa: BLE001 - safetensors raises SafetensorError, OSError or ValueError
        raise ArtifactError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]}); it is corrupt "
                            f"or truncated (fix: re-export it, or re-run training)") from None


def checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Model weights from a Lightning checkpoint, loaded without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise ArtifactError(f"checkpoint {path}: permission denied (fix: make the file readable)") from None
    except Exception:  # noqa: BLE001 - torch raises several types for unsafe/corrupt files
        # torch's own message suggests weights_only=False, which would run arbitrary code from the file
        raise ArtifactError(f"checkpoint {path} is corrupt, truncated or not a checkpoint written by `state tx train`; "
                            f"it was not loaded (fix: use another checkpoint of the run, e.g. --checkpoint last)") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"checkpoint {path} holds no model weights (fix: use a .ckpt written by `state tx train`)")
    prefix = "model."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)} or state


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path | None:
    """`final` -> model.safetensors (None); `last`/`best`/file name/path -> a .ckpt file."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    have = ", ".join(sorted(p.name for p in ckpt_dir.glob("*.ckpt"))) or "none"
    if checkpoint in ("final", WEIGHTS_FILE):
        if not (Path(run_dir) / WEIGHTS_FILE).is_file():
            raise ArtifactError(f"{run_dir}: training has not finished (no {WEIGHTS_FILE}); use one of its checkpoints "
                                f"with --checkpoint last or a file name (available: {have})")
        return None
    if checkpoint == "best":
        candidates = sorted(ckpt_dir.glob("step=*-val_loss=*.ckpt"), key=lambda p: float(p.stem.split("val_loss=")[1]))
        if not candidates:
            raise ArtifactError(f"{ckpt_dir}: no best checkpoint (no validation ran); use --checkpoint final or last")
        return candidates[0]
    name = checkpoint if checkpoint.endswith(".ckpt") else f"{checkpoint}.ckpt"
    path = Path(name) if Path(name).is_absolute() else ckpt_dir / name
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist (available: {have}; or use --checkpoint final)")
    return path


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load `state` into `model`; any missing, unexpected or differently sized tensor is one ArtifactError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    resized = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or resized:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
            "other sizes: " + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in resized[:3])
            if resized else "") if part)
        raise ArtifactError(f"{source}: checkpoint does not match {MODEL_FILE} ({detail}); it belongs to another model "
                            f"(fix: use a checkpoint of this run folder)")
    model.load_state_dict(state, strict=True)


def load_run(run_dir: str | Path, checkpoint: str = "final", device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the trained model of a run folder in eval mode, with its vocabularies and config.

    Any checkpoint of the run works, also while it is still training or after it was stopped: `model.json`
    is written when training starts."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run folder {run_dir} does not exist (fix: pass <output_dir>/<name> of a training run)")
    desc = read_model_description(run_dir)
    kind = desc["kind"]
    vocab = Vocab.load(run_dir / VOCAB_FILE)
    config = load_config(run_dir / CONFIG_FILE)
    model = build_model(kind, STConfig.from_dict(desc["model"], source=str(run_dir / MODEL_FILE)))
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    source = run_dir / WEIGHTS_FILE if ckpt is None else ckpt
    state = read_safetensors(source) if ckpt is None else checkpoint_state_dict(ckpt)
    load_weights(model, state, source)
    model.to(device).eval()
    return LoadedRun(run_dir=run_dir, model=model, vocab=vocab, config=config, model_kind=kind,
                     model_config=desc["model"], loss_config=desc.get("loss", {}))
