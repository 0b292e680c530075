"""`model.json` (model kind + resolved STConfig + LossConfig) and `model.safetensors` of a run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from state_core.atomic import atomic_path, atomic_write_text
from state_core.errors import ArtifactError
from state_core.runs.layout import MODEL_FILE, MODEL_FORMAT, WEIGHTS_FILE


def save_model_description(run_dir: Path, kind: str, resolved: dict[str, Any]) -> None:
    """Write `model.json` ({kind, model: STConfig, loss}): written when training starts, so that every
    checkpoint of the run can be loaded while it is still running or after it was stopped."""
    atomic_write_text(
        Path(run_dir) / MODEL_FILE, json.dumps({"format": MODEL_FORMAT, "kind": kind, **resolved}, indent=2)
    )


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
        raise ArtifactError(
            f"{run_dir}: no {MODEL_FILE}; this is not a run folder of `state tx train` "
            f"(fix: point to <output_dir>/<name> of a run that has started training)"
        )
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(
            f"{path}: cannot be read as JSON ({str(err).splitlines()[0]}); the run folder is damaged "
            f"(fix: re-run `state tx train` with overwrite=true)"
        ) from None
    if not isinstance(desc, dict) or desc.get("format") != MODEL_FORMAT:
        found = desc.get("format") if isinstance(desc, dict) else type(desc).__name__
        raise ArtifactError(f"{path}: model format {found!r} is not supported (expected {MODEL_FORMAT})")
    for key in ("kind", "model"):
        if key not in desc:
            raise ArtifactError(
                f"{path}: key {key!r} is missing; the run folder is damaged "
                f"(fix: re-run `state tx train` with overwrite=true)"
            )
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
        raise ArtifactError(
            f"{path}: not a readable safetensors file ({str(err).splitlines()[0]}); it is corrupt "
            f"or truncated (fix: re-export it, or re-run training)"
        ) from None
