"""Serving throughput and latency: Triton gRPC vs in-process ONNX Runtime vs torch eager, same inputs, same run.

Usage:  python bench/serve.py [--set-len 32] [--clients 16] [--requests 10500] [--perf-analyzer PATH] [--keep WORK_DIR]

One ST model (hidden 128, 4 llama layers, set length 32) is exported with the parity gate, published
(ensemble: guard step + graph, python backend locally) and served by the local tritonserver on
loopback. For batch 1, 8 and 32 sets per request it prints rows/s (a row is one cell set) and p50/p99:
  - torch eager, one caller, calls back to back;
  - ONNX Runtime in process at each intra-op thread count 1..cores; the best one is the reference;
  - Triton `state_st` (guarded ensemble, what clients call) and `state_st_onnx` (the graph alone, no
    guard: the cost of the checks), `--clients` threads, each with its own gRPC client;
  - NVIDIA's perf_analyzer (the C++ client of Triton's release) on `state_st` at concurrency 1/4/16,
    batch 8, its own figures beside ours.
Targets: Triton >= 80 % of the best in-process ORT rows/s at batch >= 8; zero failed requests over
>= 10,000. Timings on a shared 2-core CPU are noisy; compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from state_core.export import GraphInputs, ModelMetadata, export_onnx
from state_core.models.st import StateTransitionModel, STConfig
from state_core.serve.client import ClientSettings, TritonSTClient
from state_core.serve.guard_model import check_request
from state_core.serve.local_server import start_server, stop_server
from state_core.serve.repository import publish_model

BATCHES = (1, 8, 32)
INPUT_DIM, N_PERTS = 64, 50


@dataclass
class Figures:
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int = 0
    requests: int = 0


def figures(latencies: list[float], rows: int, wall_s: float, failed: int = 0) -> Figures:
    ms = np.asarray(latencies) * 1e3
    return Figures(
        rows / wall_s, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), failed, len(latencies) + failed
    )


def make_inputs(batch: int, set_len: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "ctrl_cell_emb": rng.standard_normal((batch, set_len, INPUT_DIM)).astype(np.float32),  # [B, S, D]
        "pert_idx": rng.integers(0, N_PERTS, batch).astype(np.int64),  # [B]
        "set_mask": np.ones((batch, set_len), bool),
    }  # [B, S]


def time_calls(call, inputs: dict[str, np.ndarray], seconds: float) -> Figures:
    call(inputs)  # warm-up
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call(inputs)
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    return figures(latencies, len(latencies) * inputs["pert_idx"].shape[0], wall)


def time_triton(
    url: str, inputs: dict[str, np.ndarray], clients: int, requests: int, model: str = "state_st"
) -> Figures:
    per_client = -(-requests // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        client = TritonSTClient(url, model, ClientSettings(retries=0, timeout_s=60))
        client.wait_until_ready(30)
        barrier.wait()
        for _ in range(per_client):
            t0 = time.perf_counter()
            try:
                client.predict(inputs["ctrl_cell_emb"], inputs["pert_idx"], mask=inputs["set_mask"])
                latencies[i].append(time.perf_counter() - t0)
            except Exception:  # noqa: BLE001 - a failed request is counted, not raised
                failures[i] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    flat = [x for lat in latencies for x in lat]
    return figures(flat, len(flat) * inputs["pert_idx"].shape[0], wall, sum(failures))


def best_ort(path: Path, inputs: dict[str, np.ndarray], seconds: float) -> tuple[int, Figures, dict[int, float]]:
    """In-process ORT at every intra-op thread count 1..cores: (best threads, its figures, rows/s per count)."""
    per_threads: dict[int, Figures] = {}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        per_threads[threads] = time_calls(lambda x, s=session: s.run(None, x), inputs, seconds)
    best = max(per_threads, key=lambda t: per_threads[t].rows_per_s)
    return best, per_threads[best], {t: f.rows_per_s for t, f in per_threads.items()}


PA_VERSION = "2.51.0"  # the tritonclient release of the bundled server (Triton 2.51.0 = NGC 24.10)


def find_perf_analyzer(explicit: str | None) -> tuple[Path, dict[str, str]] | None:
    """perf_analyzer from `tritonclient==2.51.0` (bin/) plus libcudart from nvidia-cuda-runtime-cu12, fetched once
    into ~/.cache/state-core with pip; needs Debian's libb64-0d (`apt-get install libb64-0d`)."""
    cache = (
        Path(os.environ.get("STATE_CORE_CACHE", Path.home() / ".cache" / "state-core")) / f"perf_analyzer-{PA_VERSION}"
    )
    binary = (
        Path(explicit) if explicit else cache / f"tritonclient-{PA_VERSION}.data" / "data" / "bin" / "perf_analyzer"
    )
    cudart = cache / "nvidia" / "cuda_runtime" / "lib"
    if not binary.exists() and not explicit:
        import zipfile

        wheels = cache / "wheels"
        for spec in (f"tritonclient=={PA_VERSION}", "nvidia-cuda-runtime-cu12"):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--platform",
                    "manylinux2014_x86_64",
                    "-d",
                    str(wheels),
                    spec,
                ],
                check=True,
            )
        for wheel in wheels.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                members = [
                    n
                    for n in archive.namelist()
                    if n.endswith("bin/perf_analyzer") or "cuda_runtime/lib/libcudart.so" in n
                ]
                archive.extractall(cache, members)
        binary.chmod(0o755)
    env = dict(
        os.environ,
        LD_LIBRARY_PATH=os.pathsep.join(p for p in (str(cudart), os.environ.get("LD_LIBRARY_PATH", "")) if p),
    )
    check = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env)
    if "not found" in check.stdout:
        missing = [line.split()[0] for line in check.stdout.splitlines() if "not found" in line]
        print(f"perf_analyzer skipped: {binary} misses {missing} (libb64: apt-get install libb64-0d)")
        return None
    return binary, env


def run_perf_analyzer(
    binary: Path, env: dict[str, str], url: str, inputs: dict[str, np.ndarray], batch: int, work: Path
) -> dict[int, tuple[float, float, float]]:
    """{concurrency: (rows/s, p50 ms, p99 ms)} from perf_analyzer on `state_st` with our valid inputs."""
    sample = {
        "ctrl_cell_emb": inputs["ctrl_cell_emb"][0],
        "pert_idx": inputs["pert_idx"][:1],
        "set_mask": inputs["set_mask"][0],
    }  # one set; perf_analyzer repeats it `-b` times
    data = {"data": [{k: {"content": v.ravel().tolist(), "shape": list(v.shape)} for k, v in sample.items()}]}
    data_file = work / "perf_input.json"
    data_file.write_text(json.dumps(data))
    figures_by_c: dict[int, tuple[float, float, float]] = {}
    for concurrency in (1, 4, 16):
        out = work / f"perf_{concurrency}.csv"
        command = [
            str(binary),
            "-m",
            "state_st",
            "-u",
            url,
            "-i",
            "grpc",
            "-b",
            str(batch),
            "--input-data",
            str(data_file),
            "--concurrency-range",
            str(concurrency),
            "--measurement-interval",
            "4000",
            # 3 windows within 100 %: on a shared 2-core machine tighter settings never stabilise
            "--stability-percentage",
            "100",
            "--max-trials",
            "10",
            "--percentile",
            "99",
            "-f",
            str(out),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            print(f"perf_analyzer failed at concurrency {concurrency}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
            continue
        header, row = out.read_text().splitlines()[:2]
        values = dict(zip(header.split(","), row.split(","), strict=False))
        # perf_analyzer's "Inferences/Second" counts batch rows; latencies are in microseconds
        p50 = re.search(r"p50 latency: (\d+) usec", done.stdout)
        figures_by_c[concurrency] = (
            float(values["Inferences/Second"]),
            float(p50.group(1)) / 1e3 if p50 else float("nan"),
            float(values["p99 latency"]) / 1e3,
        )
    return figures_by_c


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set-len", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10500, help="Triton requests to state_st over all batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per in-process measurement")
    parser.add_argument("--perf-analyzer", default=None, help="perf_analyzer binary (default: fetched into the cache)")
    parser.add_argument("--no-perf-analyzer", action="store_true")
    parser.add_argument("--keep", default=None, help="keep the work folder here")
    args = parser.parse_args()
    for name in ("onnxscript", "onnx_ir", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)

    torch.manual_seed(0)
    model = StateTransitionModel(
        STConfig(
            input_dim=INPUT_DIM,
            output_dim=INPUT_DIM,
            n_perturbations=N_PERTS,
            hidden_dim=128,
            n_layers=4,
            n_heads=4,
            ffn_dim=256,
            dropout=0.0,
            cell_set_len=args.set_len,
        )
    ).eval()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-serve-"))
    exported = work / "exported"
    result = export_onnx(model, exported / "model.onnx", GraphInputs(INPUT_DIM, N_PERTS))
    ModelMetadata(
        "state",
        "bench",
        result.signature,
        perturbations=tuple(f"p{i}" for i in range(N_PERTS)),
        extra={"cell_set_len": str(args.set_len)},
    ).save(exported / "metadata.json")
    publish_model(
        work / "repo", "state_st", exported, backend="python", max_batch_size=64, parameters={"intra_op_threads": "1"}
    )  # 2 instances x 1 thread: both cores, no oversubscription
    perf = None if args.no_perf_analyzer else find_perf_analyzer(args.perf_analyzer)

    @torch.no_grad()
    def torch_call(x):
        model(
            torch.from_numpy(x["ctrl_cell_emb"]), torch.from_numpy(x["pert_idx"]), None, torch.from_numpy(x["set_mask"])
        )

    server = start_server(work / "repo", work / "triton")
    share = {1: 0.55, 8: 0.3, 32: 0.15}  # of --requests: small batches are cheap, so they get more requests
    rows: list[tuple[str, int, Figures]] = []
    sweeps: dict[int, tuple[int, dict[int, float]]] = {}
    perf_rows: dict[int, tuple[float, float, float]] = {}
    try:
        for batch in BATCHES:
            inputs = make_inputs(batch, args.set_len, seed=batch)
            rows.append(("torch eager", batch, time_calls(torch_call, inputs, args.seconds)))
            threads, best, sweep = best_ort(exported / "model.onnx", inputs, args.seconds)
            sweeps[batch] = (threads, sweep)
            rows.append((f"ort best ({threads}t)", batch, best))
            request = {**inputs, "pert_idx": inputs["pert_idx"].reshape(batch, 1)}  # as the guard receives it
            perts = [f"p{i}" for i in range(N_PERTS)]
            rows.append(
                ("guard checks", batch, time_calls(lambda x: check_request(x, perts, 0), request, args.seconds))
            )
            n = max(args.clients, int(args.requests * share[batch]))
            rows.append((f"triton x{args.clients}", batch, time_triton(server.grpc_url, inputs, args.clients, n)))
            rows.append(
                (
                    "graph only",
                    batch,
                    time_triton(
                        server.grpc_url, inputs, args.clients, max(args.clients, n // 3), model="state_st_onnx"
                    ),
                )
            )
            if perf is not None and batch == 8:
                perf_rows = run_perf_analyzer(*perf, server.grpc_url, inputs, batch, work)
    finally:
        stop_server(server.pid)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nST model hidden 128, 4 layers, set length {args.set_len}, CPU, {os.cpu_count()} cores "
        f"({torch.get_num_threads()} torch threads); triton = guarded ensemble state_st, graph only = state_st_onnx"
    )
    print(f"{'runner':<16}{'batch':>6}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'failed':>8}")
    for name, batch, f in rows:
        print(f"{name:<16}{batch:>6}{f.rows_per_s:>10.1f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}{f.requests:>10}{f.failed:>8}")
    print(
        "\nin-process ORT rows/s by intra-op threads: "
        + "; ".join(
            f"batch {b}: " + ", ".join(f"{t}t {r:.0f}" for t, r in sweep.items()) for b, (_, sweep) in sweeps.items()
        )
    )
    by = {(name.split()[0], batch): f for name, batch, f in rows}
    print("\nratios (target):")
    for batch in BATCHES:
        ort_best = by[("ort", batch)].rows_per_s
        print(
            f"  batch {batch:>2}: ort best / torch eager = {ort_best / by[('torch', batch)].rows_per_s:.2f}x   "
            f"triton / ort best = {by[('triton', batch)].rows_per_s / ort_best:.0%}"
            + (" (>= 80 %)" if batch >= 8 else "")
            + f"   ensemble / graph only = {by[('triton', batch)].rows_per_s / by[('graph', batch)].rows_per_s:.0%}"
            + "   guard checks / ORT time per set = "
            + f"{by[('ort', batch)].rows_per_s / by[('guard', batch)].rows_per_s:.1%}"
        )
    if perf_rows:
        ours = by[("triton", 8)]
        print(f"\nperf_analyzer {PA_VERSION} on state_st, batch 8 (rows/s = its Inferences/Second):")
        print(f"{'concurrency':>12}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
        for concurrency, (rate, p50, p99) in perf_rows.items():
            print(f"{concurrency:>12}{rate:>10.1f}{p50:>9.2f}{p99:>9.2f}")
        print(
            f"  ours at concurrency {args.clients}: {ours.rows_per_s:.1f} rows/s, "
            f"p50 {ours.p50_ms:.2f} ms, p99 {ours.p99_ms:.2f} ms"
        )
    total = sum(f.requests for name, _, f in rows if name.startswith("triton"))
    failed = sum(f.failed for name, _, f in rows if name.startswith(("triton", "graph")))
    print(f"  triton requests to state_st: {total}, failed (all Triton runs): {failed} (target 0 over >= 10,000)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
