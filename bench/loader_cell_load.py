"""cell-load's `PerturbationDataModule` over the same file and TOML as `bench/loader.py`, run by that bench
inside cell-load's own venv. Same set length, sets per batch and worker count (0, in-process) as ours;
times `--batches` training batches after one untimed batch and prints one JSON line: cells/s per pass.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--toml", required=True)
    parser.add_argument("--set-len", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    from cell_load.data_modules import PerturbationDataModule

    start = time.perf_counter()
    dm = PerturbationDataModule(
        toml_config_path=args.toml,
        embed_key="X_hvg",
        output_space="gene",
        batch_size=args.batch_size,
        cell_sentence_len=args.set_len,
        num_workers=0,
        pert_col="gene",
        cell_type_key="cell_type",
        batch_col="gem_group",
        control_pert="non-targeting",
    )
    dm.setup()
    setup_s = time.perf_counter() - start
    rates = []
    for _ in range(args.passes):
        batches = iter(dm.train_dataloader())
        next(batches)  # untimed: sampler set-up and first file reads
        cells, start = 0, time.perf_counter()
        for _ in range(args.batches):
            batch = next(batches)
            cells += int(batch["pert_cell_emb"].shape[0])
        rates.append(cells / (time.perf_counter() - start))
    print(json.dumps({"setup_s": setup_s, "cells_per_s": rates}))


if __name__ == "__main__":
    main()
