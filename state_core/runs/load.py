"""`load_run(run_dir, checkpoint)`: rebuild a run's model in eval mode with its typed configs and vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from state_core.config.train_config import TrainConfig, load_config
from state_core.data.vocab import Vocab
from state_core.errors import ArtifactError
from state_core.models.baselines import build_model
from state_core.models.losses import LossConfig
from state_core.models.st import STConfig
from state_core.runs.checkpoints import checkpoint_state_dict, load_weights, resolve_checkpoint
from state_core.runs.layout import CONFIG_FILE, MODEL_FILE, VOCAB_FILE, WEIGHTS_FILE
from state_core.runs.model_files import read_model_description, read_safetensors


@dataclass(frozen=True)
class LoadedRun:
    run_dir: Path
    model: nn.Module
    vocab: Vocab
    config: TrainConfig
    model_kind: str
    model_config: STConfig  # as resolved when the run was built: sizes, cell_set_len, dims
    loss_config: LossConfig

    @property
    def run_id(self) -> str:
        return f"{self.config.name}"


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
    model_config = STConfig.from_dict(desc["model"], source=str(run_dir / MODEL_FILE))
    loss_config = LossConfig.from_dict(desc.get("loss", {}), source=f"{run_dir / MODEL_FILE}: loss")
    model = build_model(kind, model_config)
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    source = run_dir / WEIGHTS_FILE if ckpt is None else ckpt
    state = read_safetensors(source) if ckpt is None else checkpoint_state_dict(ckpt)
    load_weights(model, state, source)
    model.to(device).eval()
    return LoadedRun(
        run_dir=run_dir,
        model=model,
        vocab=vocab,
        config=config,
        model_kind=kind,
        model_config=model_config,
        loss_config=loss_config,
    )
