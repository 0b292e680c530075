"""A dataset stored under gs:// goes through the catalog and the split stage like a local one."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from state_core.config.experiment import ObsColumns, load_experiment
from state_core.data.catalog import scan_experiment
from state_core.data.splits import SplitManifest, run_split
from state_core.storage import upload


def _write(path: Path, n_pert: int, n_ctrl: int) -> Path:
    genes = ["A"] * n_pert + ["non-targeting"] * n_ctrl
    obs = pd.DataFrame(
        {
            "gene": pd.Categorical(genes),
            "cell_type": pd.Categorical(["K562"] * len(genes)),
            "gem_group": pd.Categorical(["1"] * len(genes)),
        },
        index=[f"c{i}" for i in range(len(genes))],
    )
    ad.AnnData(X=np.zeros((len(genes), 2), np.float32), obs=obs).write_h5ad(path)
    return path


def test_gcs_glob_dataset_scans_and_splits(gcs_bucket: str, tmp_path: Path) -> None:
    upload(_write(tmp_path / "a.h5ad", 4, 2), f"gs://{gcs_bucket}/exp/a.h5ad")
    upload(_write(tmp_path / "b.h5ad", 3, 1), f"gs://{gcs_bucket}/exp/b.h5ad")
    toml = tmp_path / "exp.toml"
    toml.write_text(f'[datasets]\nremote = "gs://{gcs_bucket}/exp/*.h5ad"\n[training]\nremote = "train"\n')
    files = scan_experiment(load_experiment(toml), ObsColumns(), cache_dir=tmp_path / "cache")
    assert [f.uri for f in files] == [f"gs://{gcs_bucket}/exp/a.h5ad", f"gs://{gcs_bucket}/exp/b.h5ad"]
    assert all(f.path.is_relative_to(tmp_path / "cache") for f in files)
    run_split(toml, tmp_path / "split", ObsColumns(), cache_dir=tmp_path / "cache")
    manifest = SplitManifest.load(tmp_path / "split")
    assert [f.path for f in manifest.files] == [f.uri for f in files] and manifest.n_cells("train") == 10
