"""Run a Lightning training CLI with a per-step timing callback added to every Trainer it builds.

Used by bench/train.py for both sides (our `state tx train` and arc-state's), so both are timed the same
way inside their own process: start-up, imports and data loading are outside the timed window. Only
the standard library, torch and lightning are imported, so it runs in the peer's venv as well.

    python bench/step_timer.py --out times.json [--profile A B] --module state_core.cli.main -- tx train ...

With `--matmul-precision P`, torch's fp32 matmul precision is held at P for the whole run, whatever the CLI
sets (arc-state's `tx train` sets "medium" itself), so both sides can be timed at the same matmul precision.

With `--profile A B`, steps A..B also run under torch.profiler and the self CPU time per operator goes into
the same JSON ("profile": name -> [microseconds, calls]), to say where a step's time goes.
"""

from __future__ import annotations

import argparse
import functools
import json
import runpy
import sys
import time
from pathlib import Path


def _matmul_shape(module) -> dict[str, int]:  # noqa: ANN001 - a LightningModule of either project
    """Weights of every nn.Linear (each is used once per cell per step) and the attention widths."""
    from torch import nn

    linears = {name: m.weight.numel() for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    linear = sum(linears.values())
    attn = [m.q_proj.out_features for m in module.modules() if isinstance(getattr(m, "q_proj", None), nn.Linear)]
    return {
        "linears": linears,
        "linear_params": int(linear),
        "attention_layers": len(attn),
        "attention_width": int(max(attn, default=0)),
    }


def _callback_class():
    import lightning.pytorch as pl
    import torch

    class StepTimer(pl.Callback):
        """perf_counter() after every optimizer step (after a CUDA sync on GPU); written at the end."""

        def __init__(self, out: Path, profile: tuple[int, int] | None):
            self.out, self.times, self.window, self.profiler, self.ops = out, [], profile, None, {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            if self.window and len(self.times) == self.window[0]:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                self.profiler.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            if self.profiler is not None and len(self.times) == self.window[1]:
                self.profiler.__exit__(None, None, None)
                self.ops = {e.key: [e.self_cpu_time_total, e.count] for e in self.profiler.key_averages()}
                self.profiler = None

        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            info = {
                "times": self.times,
                "precision": str(trainer.precision),
                "threads": torch.get_num_threads(),
                "matmul_precision": torch.get_float32_matmul_precision(),
                "device": str(pl_module.device),
                "profile": self.ops,
                **_matmul_shape(pl_module),
            }
            self.out.write_text(json.dumps(info))

    return StepTimer


def install(out: Path, profile: tuple[int, int] | None = None) -> None:
    """Wrap lightning.pytorch.Trainer.__init__ so each Trainer gets a StepTimer writing to `out`."""
    import lightning.pytorch as pl

    timer_cls, original = _callback_class(), pl.Trainer.__init__

    @functools.wraps(original)  # keeps the signature, which Lightning's PL_TRAINER_* env defaults read
    def init(self, *args, **kwargs):  # noqa: ANN001, ANN202
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), timer_cls(out, profile)]
        original(self, *args, **kwargs)

    pl.Trainer.__init__ = init


def hold_matmul_precision(value: str) -> None:
    """Set torch's fp32 matmul precision to `value` and make later calls to change it no-ops."""
    import torch

    torch.set_float32_matmul_precision(value)
    torch.set_float32_matmul_precision = lambda _precision: None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--module", required=True, help="the CLI's module, run as __main__")
    parser.add_argument("--profile", type=int, nargs=2, help="profile steps A..B (operator self CPU time)")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.add_argument("--matmul-precision", choices=("highest", "high", "medium"), help="hold it at this value")
    ns = parser.parse_args()
    if ns.matmul_precision:
        hold_matmul_precision(ns.matmul_precision)
    install(ns.out, tuple(ns.profile) if ns.profile else None)
    argv = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    sys.argv = [ns.module, *argv]
    runpy.run_module(ns.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
