"""The life of a training run beyond the fit itself: stopping on a signal, a diverging loss, metrics history.

* `GracefulStop`: SIGTERM/SIGINT set a flag; at the end of the current step a resumable `last.ckpt` is
  written and the fit stops; `train_st` then raises `TrainingInterrupted` (exit 143 / 130).
* `FiniteLossGuard`: a NaN/Inf training loss stops the run with one clear error instead of saving a NaN model.
* `HistoryCSVLogger`: Lightning's CSV logger deletes `metrics.csv` when it opens an existing folder; this one
  appends, so a resumed run keeps its history (rows after the resumed step are dropped first: they are re-run).
"""

from __future__ import annotations

import csv
import math
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from state_core.errors import TrainingDiverged

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop(pl.Callback):
    """Install with `with stopper.handling_signals(): trainer.fit(...)`; `stopper.signum` says what stopped it."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)
        self.signum: int | None = None
        self.saved = False

    def _on_signal(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - signal handler signature
        self.signum = signum

    def handling_signals(self) -> _Handlers:
        return _Handlers(self._on_signal)

    def _save(self, trainer: pl.Trainer) -> None:
        if not self.saved:
            trainer.save_checkpoint(self.checkpoint)  # full state: optimizer, loops, RNG -> exact resume
            self.saved = True

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.signum is not None:
            self._save(trainer)
            trainer.should_stop = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning raises its own SIGTERMException at a step boundary (also inside validation)
        if self.signum is not None and type(exception).__name__ == "SIGTERMException":
            self._save(trainer)


class _Handlers:
    """Context manager: our handler for SIGTERM/SIGINT while inside, the previous ones restored after."""

    def __init__(self, handler: Any):
        self.handler = handler
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Handlers:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for signum in STOP_SIGNALS:
                self.previous[signum] = signal.signal(signum, self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class FiniteLossGuard(pl.Callback):
    """Stop with `TrainingDiverged` as soon as the training loss is NaN or infinite."""

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss.detach().float())):
            raise TrainingDiverged(
                f"training loss is {float(loss)} at step {trainer.global_step}; the model was not saved as final\n"
                f"    fix: lower training.lr or raise training.warmup_steps, keep training.gradient_clip_val > 0, "
                f"and check the inputs for extreme values"
            )


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():  # keep the header so new rows append under it
            with path.open(newline="") as file:
                self.metrics_keys = list(next(csv.reader(file), []))


class HistoryCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def trim_metrics(path: Path, before_step: int) -> None:
    """Keep the rows of `metrics.csv` logged before `before_step` (a resumed run logs the rest again)."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if r.get("step", "") == "" or int(float(r["step"])) < before_step]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
