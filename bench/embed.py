"""Throughput of `emb transform` for a small SE model on CPU: torch eager vs ONNX Runtime.

    python bench/embed.py                       # 512 cells x 2000 genes, d=128, 4 layers, L=256
    python bench/embed.py --cells 4096 --pad-length 512 --threads 4

Prints cells/s of each stage, measured in this run on this machine:
  sentences   numpy cell-sentence construction (seeded, per cell)
  eager       the encoder (precomputed token table) in torch, on prebuilt sentences
  onnx        the exported graph in ONNX Runtime, on the same sentences
  transform   the whole `transform_h5ad` (read, sentences, eager encoder, write) on an h5ad file
and the ratio onnx / eager. Also checks that ONNX and eager agree on the benchmark batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from state_core.data.synth import SynthSpec, make_synthetic_adata
from state_core.embed.artifact import InputConvention, SEMeta, load_se_model, save_se_model
from state_core.embed.export import export_se
from state_core.embed.genes import GeneTable
from state_core.embed.sentences import SentenceSpec, build_sentences, to_log_expression
from state_core.embed.transform import transform_h5ad
from state_core.models.se import SEConfig, SEEncoderGraph, StateEmbeddingModel


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=512)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--pad-length", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--token-dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="state_bench_embed_"))

    adata = make_synthetic_adata(SynthSpec(n_cells=args.cells, n_genes=args.genes, n_perturbations=8, seed=0))
    h5ad = work / "cells.h5ad"
    adata.write_h5ad(h5ad)
    genes = list(adata.var_names)
    table = GeneTable(genes, torch.randn(len(genes), args.token_dim, generator=torch.Generator().manual_seed(0)))
    cfg = SEConfig(
        token_dim=args.token_dim,
        d_model=args.d_model,
        d_hid=2 * args.d_model,
        nhead=8,
        nlayers=args.layers,
        output_dim=args.d_model,
        dropout=0.0,
        num_datasets=1,
    )
    torch.manual_seed(0)
    spec = SentenceSpec(pad_length=args.pad_length)
    meta = SEMeta("bench", cfg, spec, InputConvention("raw", None), table.digest())
    model_dir = save_se_model(work / "model", StateEmbeddingModel(cfg, table.vectors), meta, table)
    loaded = load_se_model(model_dir)

    rows = to_log_expression(adata.X.toarray(), "raw", None)
    vocab_ids = np.arange(len(genes))
    sentences = None

    def make_sentences():
        nonlocal sentences
        sentences = build_sentences(rows, vocab_ids, np.arange(args.cells), seed=0, spec=spec)

    t_sent = timed(make_sentences)
    ids, counts = torch.from_numpy(sentences.gene_ids), torch.from_numpy(sentences.count_feat)

    graph = SEEncoderGraph(loaded.model).eval()
    with torch.inference_mode():
        graph(ids[:2], counts[:2])  # warm-up
    eager_out = []

    def run_eager():
        with torch.inference_mode():
            for s in range(0, args.cells, args.batch_size):
                eager_out.append(graph(ids[s : s + args.batch_size], counts[s : s + args.batch_size]).numpy())

    t_eager = timed(run_eager)

    t_export = timed(lambda: export_se(model_dir, work / "onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(work / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    feeds_all = {"gene_ids": sentences.gene_ids, "count_feat": sentences.count_feat}
    session.run(None, {k: v[:2] for k, v in feeds_all.items()})  # warm-up
    onnx_out = []

    def run_onnx():
        for s in range(0, args.cells, args.batch_size):
            onnx_out.append(session.run(None, {k: v[s : s + args.batch_size] for k, v in feeds_all.items()})[0])

    t_onnx = timed(run_onnx)
    diff = float(np.abs(np.concatenate(eager_out) - np.concatenate(onnx_out)).max())

    t_transform = timed(
        lambda: transform_h5ad(model_dir, h5ad, work / "out.h5ad", batch_size=args.batch_size, progress=False)
    )

    n = args.cells
    print(
        f"SE bench: {n} cells x {args.genes} genes, E={args.token_dim} d={args.d_model} layers={args.layers} "
        f"L={args.pad_length} batch={args.batch_size}, {args.threads} threads, torch {torch.__version__}, "
        f"onnxruntime {ort.__version__}"
    )
    print(f"  sentences  {rate(n, t_sent):10.1f} cells/s")
    print(f"  eager      {rate(n, t_eager):10.1f} cells/s  (encoder only)")
    print(f"  onnx       {rate(n, t_onnx):10.1f} cells/s  (encoder only; export took {t_export:.1f} s)")
    print(f"  transform  {rate(n, t_transform):10.1f} cells/s  (end to end, eager)")
    print(f"  onnx / eager speed ratio: {t_eager / max(t_onnx, 1e-9):.2f}x; max |onnx - eager| = {diff:.2e}")


if __name__ == "__main__":
    main()
