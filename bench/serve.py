"""Serving throughput and latency: Triton gRPC vs in-process ONNX Runtime vs torch eager, same inputs, same run.

Usage:  python bench/serve.py [--set-len 32] [--clients 16] [--requests 10500] [--keep WORK_DIR]

One ST model (hidden 128, 4 llama layers, set length 32) is exported with the parity gate, published
with the python-backend config and served by the local tritonserver on loopback. For batch 1, 8 and
32 sets per request it prints rows/s (a row is one cell set) and p50/p99 latency:
  - torch eager and ONNX Runtime in process: one caller, calls back to back;
  - Triton: `--clients` threads, each with its own gRPC client, sending requests back to back.
Targets: ORT >= 2x torch eager; Triton >= 80 % of in-process ORT rows/s at batch >= 8; zero failed
requests over >= 10,000. Timings on a shared 2-core CPU are noisy; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
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
    return Figures(rows / wall_s, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), failed, len(latencies) + failed)


def make_inputs(batch: int, set_len: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"ctrl_cell_emb": rng.standard_normal((batch, set_len, INPUT_DIM)).astype(np.float32),  # [B, S, D]
            "pert_idx": rng.integers(0, N_PERTS, batch).astype(np.int64),  # [B]
            "set_mask": np.ones((batch, set_len), bool)}  # [B, S]


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


def time_triton(url: str, inputs: dict[str, np.ndarray], clients: int, requests: int) -> Figures:
    per_client = -(-requests // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    barrier = threading.Barrier(clients + 1)

    def worker(i: int) -> None:
        client = TritonSTClient(url, "state_st", ClientSettings(retries=0, timeout_s=60))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set-len", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=10500, help="Triton requests over all batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per in-process measurement")
    parser.add_argument("--keep", default=None, help="keep the work folder here")
    args = parser.parse_args()
    for name in ("onnxscript", "onnx_ir", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)

    torch.manual_seed(0)
    model = StateTransitionModel(STConfig(input_dim=INPUT_DIM, output_dim=INPUT_DIM, n_perturbations=N_PERTS,
                                          hidden_dim=128, n_layers=4, n_heads=4, ffn_dim=256, dropout=0.0,
                                          cell_set_len=args.set_len)).eval()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-serve-"))
    exported = work / "exported"
    result = export_onnx(model, exported / "model.onnx", GraphInputs(INPUT_DIM, N_PERTS))
    ModelMetadata("state", "bench", result.signature, perturbations=tuple(f"p{i}" for i in range(N_PERTS))).save(
        exported / "metadata.json")
    publish_model(work / "repo", "state_st", exported, backend="python", max_batch_size=64,
                  parameters={"intra_op_threads": "1"})

    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])

    @torch.no_grad()
    def torch_call(x):
        model(torch.from_numpy(x["ctrl_cell_emb"]), torch.from_numpy(x["pert_idx"]), None, torch.from_numpy(x["set_mask"]))

    server = start_server(work / "repo", work / "triton")
    share = {1: 0.55, 8: 0.3, 32: 0.15}  # of --requests: small batches are cheap, so they get more requests
    rows: list[tuple[str, int, Figures]] = []
    try:
        for batch in BATCHES:
            inputs = make_inputs(batch, args.set_len, seed=batch)
            rows.append(("torch eager", batch, time_calls(torch_call, inputs, args.seconds)))
            rows.append(("onnxruntime", batch, time_calls(lambda x: session.run(None, x), inputs, args.seconds)))
            n = max(args.clients, int(args.requests * share[batch]))
            rows.append((f"triton x{args.clients}", batch, time_triton(server.grpc_url, inputs, args.clients, n)))
    finally:
        stop_server(server.pid)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nST model hidden 128, 4 layers, set length {args.set_len}, CPU ({torch.get_num_threads()} torch threads)")
    print(f"{'runner':<14}{'batch':>6}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'failed':>8}")
    for name, batch, f in rows:
        print(f"{name:<14}{batch:>6}{f.rows_per_s:>10.1f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}{f.requests:>10}{f.failed:>8}")
    by = {(name.split()[0], batch): f for name, batch, f in rows}
    print("\nratios (target):")
    for batch in BATCHES:
        ort_vs_torch = by[("onnxruntime", batch)].rows_per_s / by[("torch", batch)].rows_per_s
        triton_vs_ort = by[("triton", batch)].rows_per_s / by[("onnxruntime", batch)].rows_per_s
        print(f"  batch {batch:>2}: onnxruntime / torch eager = {ort_vs_torch:.2f}x (>= 2)   "
              f"triton / onnxruntime = {triton_vs_ort:.0%}" + (" (>= 80 %)" if batch >= 8 else ""))
    total = sum(f.requests for name, _, f in rows if name.startswith("triton"))
    failed = sum(f.failed for name, _, f in rows if name.startswith("triton"))
    print(f"  triton requests: {total}, failed: {failed} (target 0 over >= 10,000)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
