"""Throughput of the cell-set loader against a plain in-memory numpy gather of the same rows.

    python bench/loader.py                      # ~100k cells x 2000-d X_hvg, S=64, B=16, 3 epochs
    python bench/loader.py --stream             # feature store as an on-disk memmap instead of RAM

The synthetic file is built once and cached (default: <tmp>/state_core_bench_loader; --cache-dir to move it).
Labels come from `state_core.data.synth`; the 2000-d `obsm["X_hvg"]` is written directly (random values),
because generating and preprocessing 100k x 2000 counts would dominate the run and is not what is measured.

Prints, per epoch: cells/s of the loader (full training batches: ctrl + target gathered into torch tensors,
controls drawn), cells/s of bare `np.take` of the same target and control rows from the same array (RAM, or
the memmap with --stream), their ratio,
and the process RSS (current and peak) so memory growth across epochs is visible. Timings on a shared
machine vary with the load of other processes: compare the ratio, not the absolute figures across runs.

Then the original loader, cell-load's `PerturbationDataModule`, over the same file and TOML with the same
set length, sets per batch and no worker processes (`bench/loader_cell_load.py`, in its own venv under
bench/.cache/cell-load; `--skip-cell-load` to leave it out), and the ratio of the two in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np

from benchlib import fmt_spread, load_average, peer_venv, spread
from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.cellsets import StoreSettings
from state_core.data.datamodule import CellSetDataModule
from state_core.data.sampler import draw_controls
from state_core.data.splits import build_split_manifest
from state_core.data.synth import SynthSpec, make_synthetic_adata
from state_core.data.vocab import build_vocab

_ROWS_PER_WRITE = 8192


def build_file(path: Path, n_cells: int, dim: int, seed: int) -> Path:
    """A ~n_cells h5ad: synthetic obs labels, a 1-column X, and a dense float32 obsm/X_hvg [n, dim]."""
    if path.is_file():
        return path
    spec = SynthSpec(n_cells=n_cells, n_genes=60, n_cell_types=4, n_perturbations=50, n_batches=3, seed=seed)
    labels = make_synthetic_adata(spec).obs
    tmp = path.with_name(f".{path.name}.tmp")
    ad.AnnData(X=np.zeros((len(labels), 1), np.float32), obs=labels).write_h5ad(tmp)
    rng = np.random.default_rng(seed)
    with h5py.File(tmp, "a") as file:
        obsm = file.require_group("obsm")
        obsm.attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        hvg = obsm.create_dataset("X_hvg", shape=(len(labels), dim), dtype=np.float32)  # uncompressed
        hvg.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        for start in range(0, len(labels), _ROWS_PER_WRITE):
            stop = min(start + _ROWS_PER_WRITE, len(labels))
            hvg[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    tmp.replace(path)
    return path


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    current = pages * resource.getpagesize() / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def epoch_rates(dm: CellSetDataModule, loader, epoch: int, array: np.ndarray) -> tuple[float, float, int]:  # noqa: ANN001
    """(loader cells/s, numpy cells/s, batches) for one epoch, timed batch by batch in alternation.

    After each loader batch, the same target and control rows are gathered with bare `np.take` from
    `array`, so both figures see the same machine load.
    """
    data = dm.split_data("train")
    plan = dm.plan_factory("train", resample=True)(epoch=epoch)
    dm.set_epoch(epoch)
    loader_s = numpy_s = 0.0
    cells = n_batches = 0
    batches = iter(loader)
    for i in range(plan.n_batches):
        start = time.perf_counter()
        batch = next(batches)
        loader_s += time.perf_counter() - start
        members = plan.members[plan.batch_sets(i)].ravel()
        ctrl = draw_controls(data.layout, plan, plan.batch_sets(i), dm.seed).ravel()
        start = time.perf_counter()
        np.take(array, members, axis=0)
        np.take(array, ctrl, axis=0)
        numpy_s += time.perf_counter() - start
        cells += int(batch.mask.sum())
        n_batches += 1
        del batch
    return cells / loader_s, cells / numpy_s, n_batches


def compare_cell_load(toml: Path, args: argparse.Namespace, ours: list[float]) -> None:
    """cell-load over the same TOML, in its own venv; prints its cells/s per pass and ours / theirs."""
    python = peer_venv("cell-load", ["cell-load"], torch_first=True)
    if python is None:
        return
    cmd = [str(python), str(Path(__file__).with_name("loader_cell_load.py")), "--toml", str(toml)]
    cmd += ["--set-len", str(args.set_len), "--batch-size", str(args.batch_size)]
    cmd += ["--batches", str(args.cell_load_batches)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"cell-load failed:\n{done.stderr[-2000:]}")
        return
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    rates = theirs["cells_per_s"]
    print(
        f"cell-load PerturbationDataModule (num_workers=0, {args.cell_load_batches} batches x 3 passes): "
        f"{fmt_spread(rates)} cells/s, setup {theirs['setup_s']:.1f}s; ours {fmt_spread(ours)} cells/s "
        f"= x{spread(ours)[1] / spread(rates)[1]:.0f} ({load_average()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=2000)
    parser.add_argument("--set-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--stream", action="store_true", help="memmap store on disk (memory budget 0)")
    parser.add_argument("--keep-dtype", action="store_true", help="float16 batches (cast later on the device)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "state_core_bench_loader")
    parser.add_argument("--skip-cell-load", action="store_true")
    parser.add_argument("--cell-load-batches", type=int, default=40, help="timed batches per cell-load pass")
    args = parser.parse_args()

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    h5ad = build_file(args.cache_dir / f"bench_{args.cells}x{args.dim}.h5ad", args.cells, args.dim, seed=0)
    toml = args.cache_dir / "bench.toml"
    toml.write_text(f'[datasets]\nbench = "{h5ad}"\n[training]\nbench = "train"\n')
    manifest = build_split_manifest(load_experiment(toml), ObsColumns(), seed=0)
    vocab = build_vocab(
        manifest,
        pert_col="gene",
        cell_type_key="cell_type",
        batch_col="gem_group",
        control_pert="non-targeting",
        embed_key="X_hvg",
        output_space="gene",
    )
    print(f"data ready in {time.perf_counter() - t0:.1f}s: {h5ad} ({manifest.n_cells('train')} train cells)")

    budget = 0 if args.stream else 16 * 2**30
    store = StoreSettings(
        dtype=args.dtype,
        memory_budget_bytes=budget,
        cache_dir=str(args.cache_dir / "stores"),
        batch_in_store_dtype=args.keep_dtype,
    )
    dm = CellSetDataModule(manifest, vocab, cell_set_len=args.set_len, batch_size=args.batch_size, seed=0, store=store)
    t0 = time.perf_counter()
    dm.setup("fit")
    features = dm.split_data("train").features
    print(
        f"setup (labels, layout, store {'memmap' if features.streamed else 'RAM'} {args.dtype}) "
        f"{time.perf_counter() - t0:.1f}s; RSS {rss_mib()[0]:.0f} MiB"
    )
    reference_array = features.array  # the same rows the loader reads (RAM array, or the memmap with --stream)

    loader = dm.train_dataloader()
    print(
        f"{'epoch':>5} {'batches':>7} {'loader cells/s':>15} {'numpy cells/s':>14} {'ratio':>6} "
        f"{'RSS MiB':>8} {'peak MiB':>9}"
    )
    ours = []
    for epoch in range(args.epochs):
        loader_rate, ref, n_batches = epoch_rates(dm, loader, epoch, reference_array)
        ours.append(loader_rate)
        current, peak = rss_mib()
        print(
            f"{epoch:>5} {n_batches:>7} {loader_rate:>15,.0f} {ref:>14,.0f} {loader_rate / ref:>6.2f} "
            f"{current:>8.0f} {peak:>9.0f}"
        )
    if not args.skip_cell_load:
        compare_cell_load(toml, args, ours)
    print(
        "note: shared 2-core machine; other processes affect absolute figures (the ratio is measured in the same run)"
    )


if __name__ == "__main__":
    main()
