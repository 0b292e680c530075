"""ST training throughput (cells/s) next to the original arc-state measured in the same run.

Config (issue "State Transition model"): state_sm shape with hidden 336, cell sets of 64, 8 sets per batch,
X_hvg 2000-d inputs, on the synthetic fewshot experiment. Steady-state throughput is measured as the
difference of two runs (short and long) so start-up (imports, data loading, model build) cancels out.
The peer is `arc-state` from PyPI in its own virtual environment (created on first use under
bench/.cache/arcvenv, with the local CPU torch wheel and transformers 4.52.3); pass --no-peer to skip it.

    python bench/train.py [--cells 20000] [--steps 10 40] [--no-peer]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
PEER_VENV = Path(os.environ.get("STATE_BENCH_ARC_VENV", CACHE / "arcvenv"))
S, B, HIDDEN, HVG = 64, 8, 336, 2000
REFERENCE_ARC_CELLS_PER_S = 607.0  # arc-state 0.11.1 on this machine class (spec); printed for context


def make_data(n_cells: int) -> Path:
    from state_core.data.synth import SynthSpec, write_synthetic_experiment

    out = CACHE / f"train_bench_{n_cells}"
    if not (out / "fewshot.toml").exists():
        spec = SynthSpec(n_cells=n_cells, n_genes=2400, n_cell_types=3, n_perturbations=40, n_batches=2, seed=0)
        write_synthetic_experiment(out, spec, num_hvgs=HVG, embed_key=None)
    return out


def ours(data: Path, steps: int, precision: str = "auto") -> float:
    """Wall seconds of `state tx train` for `steps` steps (subprocess, like a user runs it)."""
    run = CACHE / "runs_ours"
    cmd = [sys.executable, "-m", "state_core.cli.main", "tx", "train",
           f"data.kwargs.toml_config_path={data / 'fewshot.toml'}", "data.kwargs.embed_key=X_hvg",
           "data.kwargs.batch_col=gem_group", "data.kwargs.pert_col=gene", "data.kwargs.cell_type_key=cell_type",
           "data.kwargs.control_pert=non-targeting", f"training.max_steps={steps}", "training.val_freq=100000",
           "training.ckpt_every_n_steps=100000", f"training.batch_size={B}", "training.lr=1e-4",
           f"model.kwargs.cell_set_len={S}", f"model.kwargs.hidden_dim={HIDDEN}", "model=state_sm",
           "training.progress_bar=false", f"training.precision={precision}", f"output_dir={run}", "name=bench",
           "overwrite=true"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ensure_peer() -> Path | None:
    python = PEER_VENV / "bin" / "python"
    if (PEER_VENV / ".ok").exists():
        return python
    print(f"installing arc-state into {PEER_VENV} (one-off, a few minutes) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + ["arc-state", "transformers==4.52.3"], check=True)
    except subprocess.CalledProcessError as err:
        print(f"peer unavailable: {err}")
        return None
    (PEER_VENV / ".ok").touch()
    return python


def peer(python: Path, data: Path, steps: int) -> float:
    """Wall seconds of arc-state's `state tx train` with the README command line for `steps` steps."""
    run = CACHE / "runs_peer"
    script = textwrap.dedent(f"""
        import sys
        from state.__main__ import main
        sys.argv = ["state", "tx", "train",
            "data.kwargs.toml_config_path={data / 'fewshot.toml'}", "data.kwargs.embed_key=X_hvg",
            "data.kwargs.num_workers=0", "data.kwargs.batch_col=gem_group", "data.kwargs.pert_col=gene",
            "data.kwargs.cell_type_key=cell_type", "data.kwargs.control_pert=non-targeting",
            "data.kwargs.output_space=gene",
            "training.max_steps={steps}", "training.val_freq=100000", "training.ckpt_every_n_steps=100000",
            "training.batch_size={B}", "training.lr=1e-4", "model.kwargs.cell_set_len={S}",
            "model.kwargs.hidden_dim={HIDDEN}", "model=state_sm", "use_wandb=false",
            "output_dir={run}", "name=bench_{steps}", "overwrite=true"]
        main()
    """)
    env = dict(os.environ, WANDB_MODE="disabled")
    start = time.perf_counter()
    # cell-load resolves relative dataset paths against the working directory, not the TOML file
    subprocess.run([str(python), "-c", script], check=True, cwd=data, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def steady_cells_per_s(timer, short: int, long: int) -> float:
    extra = timer(long) - timer(short)
    return (long - short) * B * S / max(extra, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=20000)
    parser.add_argument("--steps", type=int, nargs=2, default=(10, 40))
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    data = make_data(args.cells)
    short, long = args.steps
    result: dict[str, float | str] = {"config": f"state_sm hidden={HIDDEN} S={S} B={B} X_hvg={HVG}",
                                      "threads": str(os.cpu_count())}
    from state_core.train.fit import resolve_precision

    result["ours_auto_precision"] = resolve_precision("auto")
    result["ours_cells_per_s"] = round(steady_cells_per_s(lambda n: ours(data, n), short, long), 1)
    print(f"ours (precision auto = {result['ours_auto_precision']}): {result['ours_cells_per_s']:>8} cells/s", flush=True)
    result["ours_fp32_cells_per_s"] = round(steady_cells_per_s(lambda n: ours(data, n, "32-true"), short, long), 1)
    print(f"ours (32-true):  {result['ours_fp32_cells_per_s']:>8} cells/s", flush=True)
    python = None if args.no_peer else ensure_peer()
    if python is not None:
        try:
            result["arc_state_cells_per_s"] = round(steady_cells_per_s(lambda n: peer(python, data, n), short, long), 1)
            result["ratio"] = round(result["ours_cells_per_s"] / result["arc_state_cells_per_s"], 2)
            result["ratio_fp32"] = round(result["ours_fp32_cells_per_s"] / result["arc_state_cells_per_s"], 2)
            print(f"arc-state (fp32): {result['arc_state_cells_per_s']:>8} cells/s   ratio {result['ratio']}x "
                  f"(target >= 2x); fp32 against fp32 {result['ratio_fp32']}x")
        except subprocess.CalledProcessError as err:
            print(f"arc-state run failed ({err}); reference figure from the spec: {REFERENCE_ARC_CELLS_PER_S} cells/s")
    else:
        print(f"arc-state not run; reference from the spec: {REFERENCE_ARC_CELLS_PER_S} cells/s, "
              f"ratio vs reference {result['ours_cells_per_s'] / REFERENCE_ARC_CELLS_PER_S:.2f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
