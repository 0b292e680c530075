"""Shared fixtures: tiny synthetic Perturb-seq data built with `state_core.data.synth`.

Session-scoped fixtures are shared by every test: treat them as read-only (copy before mutating).
`synth_adata` hands out a fresh copy per test, so it may be modified freely.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import pytest

from state_core.data.synth import SynthExperiment, SynthSpec, make_synthetic_adata, write_synthetic_experiment

TEST_NUM_HVGS = 64


@pytest.fixture(scope="session")
def synth_spec() -> SynthSpec:
    """~1500 cells x 120 genes, 3 cell types (K562, RPE1, Jurkat), 8 perturbations, 2 batches."""
    return SynthSpec(n_cells=1500, n_genes=120, n_cell_types=3, n_perturbations=8, n_batches=2, seed=0)


@pytest.fixture(scope="session")
def _synth_adata_shared(synth_spec: SynthSpec) -> ad.AnnData:
    return make_synthetic_adata(synth_spec)


@pytest.fixture
def synth_adata(_synth_adata_shared: ad.AnnData) -> ad.AnnData:
    """Raw counts (CSR float32) with categorical obs `gene`, `cell_type`, `gem_group`; a private copy."""
    return _synth_adata_shared.copy()


@pytest.fixture(scope="session")
def synth_experiment(tmp_path_factory: pytest.TempPathFactory, synth_spec: SynthSpec) -> SynthExperiment:
    """One preprocessed h5ad (`synth/part0.h5ad`: log-normalised X, layers["counts"], obsm X_hvg [64] and
    X_state [16]) plus `zeroshot.toml` (Jurkat -> test, RPE1 -> val) and `fewshot.toml` (K562 val/test perts).
    Read-only: copy files before changing them."""
    root: Path = tmp_path_factory.mktemp("synth_experiment")
    return write_synthetic_experiment(root, synth_spec, num_hvgs=TEST_NUM_HVGS)


@pytest.fixture(scope="session")
def synth_experiment_two_files(tmp_path_factory: pytest.TempPathFactory, synth_spec: SynthSpec) -> SynthExperiment:
    """Like `synth_experiment` but the rows are split over `part0.h5ad` and `part1.h5ad` (same categories)."""
    root: Path = tmp_path_factory.mktemp("synth_experiment_two_files")
    return write_synthetic_experiment(root, synth_spec, num_hvgs=TEST_NUM_HVGS, n_files=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gcs_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Name of an empty bucket on a fresh in-process GCS emulator (loopback, free port), reached through
    STORAGE_EMULATOR_HOST; stopped at teardown."""
    from gcp_storage_emulator.server import create_server

    port, bucket = free_port(), "state-test"
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield bucket
    finally:
        server.stop()
