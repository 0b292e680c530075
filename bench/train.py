"""ST training throughput (cells/s) and MFU, ours against arc-state at equal precision, interleaved.

Config (issue "State Transition model"): state_sm shape with hidden 336, cell sets of 64, 8 sets per batch,
X_hvg 2000-d inputs, on the synthetic fewshot experiment. Each run is one `state tx train` process (ours, or
arc-state's README command line in its own venv under bench/.cache/arcvenv) with a timing callback added
inside the process (bench/step_timer.py): cells/s = B*S*(end-start) / time from step `start` to step
`end`, so start-up and warm-up steps are outside the window. Both sides run at the same precision (arc-state
through Lightning's standard PL_TRAINER_PRECISION, no code change); runs are interleaved (the order rotates
each repeat) and reported as median [min-max] with the load average of each run.

"fp32 matmul precision" is torch.set_float32_matmul_precision, a setting apart from the autocast precision:
arc-state's `tx train` sets "medium" (on CPU, oneDNN's bf16 fp32-math mode, 2.4x faster fp32 matmuls), so
its "32-true" is not full fp32. Each case is run at a matmul precision held equal on both sides (ours through
`training.matmul_precision`, arc-state through step_timer's --matmul-precision, no code change).

MFU = model FLOPs per second / the machine's peak for that dtype and matmul precision: the larger of the
theoretical figure and a large GEMM measured in this process (the cores boost past the nominal clock).
Model FLOPs per step are 6 x (cells) x (nn.Linear weights) + 12 x layers x B x S^2 x attention width
(forward + backward), counted on each side's own module; the loss and element-wise ops are left out.
Theoretical CPU peak = cores x clock x FLOP/cycle (Zen 4: 32 fp32, 64 bf16 with AVX512-BF16).

    python bench/train.py [--repeats 3] [--steps 10 60] [--precisions bf16-mixed 32-true]
        [--matmul-precisions medium highest] [--no-peer]
    python bench/train.py --profile [--precisions 32-true]   # where a step's time goes, per operator, per side
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import CACHE, ROOT, fmt_spread, load_average, peer_venv

S, B, HIDDEN, HVG = 64, 8, 336, 2000
TIMER = ROOT / "bench" / "step_timer.py"
# "ours-arcsize": our code with arc_compat, whose backbone keeps arc-state's YAML widths at hidden 336
# (attention 8 x 84, SwiGLU 2688; ours scales them to 336 / 1344), so both sides do the same FLOPs per step
OURS = {"ours": [], "ours-arcsize": ["model.kwargs.arc_compat=true"]}
FLOP_PER_CYCLE = {"32-true": 32, "bf16-mixed": 64}  # per core, Zen 4 (2 x 256-bit FMA; bf16 dot products)


@dataclass(frozen=True)
class Run:
    side: str
    precision: str
    matmul: str
    cells_per_s: float
    flops_per_step: float
    load: str
    reported_precision: str
    reported_matmul: str


def make_data(n_cells: int) -> Path:
    from state_core.data.synth import SynthSpec, write_synthetic_experiment

    out = CACHE / f"train_bench_{n_cells}"
    if not (out / "fewshot.toml").exists():
        spec = SynthSpec(n_cells=n_cells, n_genes=2400, n_cell_types=3, n_perturbations=40, n_batches=2, seed=0)
        write_synthetic_experiment(out, spec, num_hvgs=HVG, embed_key=None)
    return out


def common_args(data: Path, steps: int) -> list[str]:
    return [
        f"data.kwargs.toml_config_path={data / 'fewshot.toml'}",
        "data.kwargs.embed_key=X_hvg",
        "data.kwargs.batch_col=gem_group",
        "data.kwargs.pert_col=gene",
        "data.kwargs.cell_type_key=cell_type",
        "data.kwargs.control_pert=non-targeting",
        f"training.max_steps={steps}",
        "training.val_freq=100000",
        "training.ckpt_every_n_steps=100000",
        f"training.batch_size={B}",
        "training.lr=1e-4",
        f"model.kwargs.cell_set_len={S}",
        f"model.kwargs.hidden_dim={HIDDEN}",
        "model=state_sm",
    ]


def command(
    side: str,
    python: Path,
    data: Path,
    steps: int,
    precision: str,
    matmul: str,
    out: Path,
    profile: tuple[int, int] | None = None,
) -> tuple[list[str], dict, Path]:
    """(argv, env, cwd) of one timed training process."""
    timer = [str(python), str(TIMER), "--out", str(out)] + (["--profile", *map(str, profile)] if profile else [])
    if side in OURS:
        args = (
            common_args(data, steps)
            + OURS[side]
            + [
                "training.progress_bar=false",
                f"training.precision={precision}",
                f"training.matmul_precision={matmul}",
                f"output_dir={CACHE / 'runs_ours'}",
                "name=bench",
                "overwrite=true",
            ]
        )
        return timer + ["--module", "state_core.cli.main", "--", "tx", "train", *args], dict(os.environ), ROOT
    timer += ["--matmul-precision", matmul]
    args = common_args(data, steps) + [
        "data.kwargs.num_workers=0",
        "data.kwargs.output_space=gene",
        "use_wandb=false",
        f"output_dir={CACHE / 'runs_peer'}",
        "name=bench",
        "overwrite=true",
    ]
    env = dict(os.environ, WANDB_MODE="disabled", PL_TRAINER_PRECISION=precision, PYTHONPATH="")
    # cell-load resolves relative dataset paths against the working directory, not the TOML file
    return timer + ["--module", "state", "--", "tx", "train", *args], env, data


def train_once(
    side: str,
    python: Path,
    data: Path,
    steps: int,
    precision: str,
    matmul: str,
    out: Path,
    profile: tuple[int, int] | None = None,
) -> dict:
    """One training process with the step timer (and profiler); what the timer wrote."""
    out.unlink(missing_ok=True)
    argv, env, cwd = command(side, python, data, steps, precision, matmul, out, profile)
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{side} training failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def timed_run(side: str, python: Path, data: Path, window: tuple[int, int], precision: str, matmul: str) -> Run:
    start, end = window
    load = load_average()
    info = train_once(side, python, data, end, precision, matmul, CACHE / f"steps_{side}.json")
    times = info["times"]
    rate = (end - start) * B * S / (times[end - 1] - times[start - 1])
    flops = 6 * B * S * info["linear_params"] + 12 * info["attention_layers"] * B * S * S * info["attention_width"]
    return Run(side, precision, matmul, rate, flops, load, info["precision"], info["matmul_precision"])


PROFILE_WINDOW = (20, 30)  # steps profiled: after warm-up, few enough that the profiler's overhead stays small
# operator families, to read two different code bases side by side (first match wins); the energy
# distance loss has no operators of its own (its pairwise distances are matmuls), so it is not a family
FAMILIES = (
    ("matmul (linear, mm, bmm)", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("attention kernel", ("scaled_dot_product", "_flash", "softmax")),
    ("optimizer", ("adam", "_foreach", "lerp")),
    ("copies and layout", ("copy_", "clone", "contiguous", "to_copy", "cat", "stack", "index", "gather")),
)


def profile_side(side: str, python: Path, data: Path, precision: str, matmul: str) -> dict[str, list[float]]:
    """Self CPU microseconds and calls per operator over PROFILE_WINDOW steps of one run."""
    out = CACHE / f"profile_{side}.json"
    return train_once(side, python, data, PROFILE_WINDOW[1], precision, matmul, out, PROFILE_WINDOW)["profile"]


def print_profiles(profiles: dict[str, dict[str, list[float]]], precision: str) -> None:
    steps = PROFILE_WINDOW[1] - PROFILE_WINDOW[0]
    print(
        f"\nwhere a {precision} step goes (self CPU ms per step, torch.profiler over {steps} steps; {load_average()})"
    )
    families = [name for name, _ in FAMILIES] + ["everything else"]
    per_side = {}
    for side, ops in profiles.items():
        totals = dict.fromkeys(families, 0.0)
        for op, (micros, _) in ops.items():
            family = next((n for n, keys in FAMILIES if any(k in op.lower() for k in keys)), "everything else")
            totals[family] += micros / 1e3 / steps
        per_side[side] = totals
    sides = list(profiles)
    print(f"{'family':28}" + "".join(f"{s:>14}" for s in sides))
    for family in families + ["total"]:
        row = [sum(t.values()) if family == "total" else t[family] for t in per_side.values()]
        print(f"{family:28}" + "".join(f"{v:14.1f}" for v in row))
    for side, ops in profiles.items():
        top = sorted(ops.items(), key=lambda kv: -kv[1][0])[:8]
        shown = ", ".join(f"{op} {micros / 1e3 / steps:.1f}" for op, (micros, _) in top)
        print(f"  {side} top operators (ms/step): {shown}")


def cpu_peak(precision: str) -> float:
    """Theoretical peak FLOP/s of the cores this process may use, from the clock in /proc/cpuinfo."""
    mhz = [
        float(line.split(":")[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("cpu MHz")
    ]
    return len(os.sched_getaffinity(0)) * (max(mhz) * 1e6) * FLOP_PER_CYCLE[precision]


def gemm_rate(precision: str, matmul: str, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n x n matmul in this process (torch, all threads) at that dtype and fp32 matmul
    precision."""
    import torch

    torch.set_float32_matmul_precision(matmul)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20000)
    parser.add_argument("--steps", type=int, nargs=2, default=(10, 60), help="timed window: from step A to step B")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed", "32-true"], choices=sorted(FLOP_PER_CYCLE))
    parser.add_argument(
        "--matmul-precisions", nargs="+", default=["medium", "highest"], choices=("medium", "high", "highest")
    )
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile one run per side instead of timing")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    data = make_data(args.cells)
    pythons = {side: Path(sys.executable) for side in OURS}
    if not args.no_peer:
        peer = peer_venv("arcvenv", ["arc-state==0.11.1", "transformers==4.52.3"], torch_first=True)
        if peer is not None:
            pythons["arc-state"] = peer
    modes = [(p, m) for p in args.precisions for m in args.matmul_precisions]
    if args.profile:
        for precision, matmul in modes:
            profiles = {s: profile_side(s, python, data, precision, matmul) for s, python in pythons.items()}
            print_profiles(profiles, f"{precision}, fp32 matmul {matmul},")
        return 0
    cases = [(side, p, m) for p, m in modes for side in pythons]
    print(
        f"state_sm hidden={HIDDEN} S={S} B={B} X_hvg={HVG}; steps {args.steps[0]}->{args.steps[1]}; "
        f"{args.repeats} interleaved repeats; {load_average()}",
        flush=True,
    )
    runs: list[Run] = []
    for rep in range(args.repeats):
        shift = rep % len(cases)
        for side, precision, matmul in cases[shift:] + cases[:shift]:  # rotate: no side always goes first
            run = timed_run(side, pythons[side], data, tuple(args.steps), precision, matmul)
            runs.append(run)
            print(
                f"  repeat {rep}: {side:12} {precision:10} matmul {matmul:7} {run.cells_per_s:7.0f} cells/s  "
                f"({run.load}; trainer precision {run.reported_precision}, matmul {run.reported_matmul})",
                flush=True,
            )
    peaks = {}
    for precision, matmul in modes:
        measured = gemm_rate(precision, matmul)
        peaks[precision, matmul] = max(cpu_peak(precision), measured)
        print(
            f"peak {precision}, fp32 matmul {matmul}: {cpu_peak(precision) / 1e9:.0f} GFLOP/s theoretical, "
            f"{measured / 1e9:.0f} GFLOP/s measured 2048^3 GEMM ({load_average()}); MFU below uses the larger"
        )
    summary: dict[str, dict] = {}
    print(f"\n{'side':12} {'precision':10} {'matmul':7} {'cells/s median [min-max]':>26} {'GFLOP/step':>10} {'MFU':>6}")
    for side, precision, matmul in cases:
        mine = [r for r in runs if (r.side, r.precision, r.matmul) == (side, precision, matmul)]
        rates = [r.cells_per_s for r in mine]
        steps_per_s = sorted(rates)[len(rates) // 2] / (B * S)
        mfu = steps_per_s * mine[0].flops_per_step / peaks[precision, matmul]
        summary[f"{side} {precision} {matmul}"] = {
            "cells_per_s": rates,
            "mfu": mfu,
            "gflop_per_step": mine[0].flops_per_step / 1e9,
            "loads": [r.load for r in mine],
        }
        print(
            f"{side:12} {precision:10} {matmul:7} {fmt_spread(rates):>26} "
            f"{mine[0].flops_per_step / 1e9:10.1f} {mfu:6.1%}"
        )
    if "arc-state" in pythons:
        for precision, matmul in modes:
            peer = summary[f"arc-state {precision} {matmul}"]["cells_per_s"]
            for side in OURS:
                ours = summary[f"{side} {precision} {matmul}"]["cells_per_s"]
                ratios = [a / b for a, b in zip(ours, peer)]  # per repeat: runs next to each other
                print(
                    f"ratio {side} / arc-state at {precision}, matmul {matmul}: {fmt_spread(ratios, 2)} (target >= 2x)"
                )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
