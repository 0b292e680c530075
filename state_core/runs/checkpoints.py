"""Which weights of a run folder to load (`final`, `last`, `best`, a file) and loading them safely."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from state_core.errors import ArtifactError
from state_core.runs.layout import CHECKPOINT_DIR, MODEL_FILE, WEIGHTS_FILE


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
        raise ArtifactError(
            f"checkpoint {path} is corrupt, truncated or not a checkpoint written by `state tx train`; "
            f"it was not loaded (fix: use another checkpoint of the run, e.g. --checkpoint last)"
        ) from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"checkpoint {path} holds no model weights (fix: use a .ckpt written by `state tx train`)")
    prefix = "model."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)} or state


def resolve_checkpoint(run_dir: Path, checkpoint: str) -> Path | None:
    """`final` -> model.safetensors (None); `last`/`best`/file name/path -> a .ckpt file."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    have = ", ".join(sorted(p.name for p in ckpt_dir.glob("*.ckpt"))) or "none"
    if checkpoint in ("final", WEIGHTS_FILE):
        if not (Path(run_dir) / WEIGHTS_FILE).is_file():
            raise ArtifactError(
                f"{run_dir}: training has not finished (no {WEIGHTS_FILE}); use one of its checkpoints "
                f"with --checkpoint last or a file name (available: {have})"
            )
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
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {unexpected[:5]}" if unexpected else "",
                "other sizes: "
                + ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in resized[:3])
                if resized
                else "",
            )
            if part
        )
        raise ArtifactError(
            f"{source}: checkpoint does not match {MODEL_FILE} ({detail}); it belongs to another model "
            f"(fix: use a checkpoint of this run folder)"
        )
    model.load_state_dict(state, strict=True)
