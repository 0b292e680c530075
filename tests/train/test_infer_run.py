"""`state tx infer` on a trained run: named output key, seeded, clear errors, nothing half written."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from state_core.cli.main import main
from state_core.errors import UnknownLabelError
from state_core.train.infer import InferOptions, infer_file


def test_infer_writes_predictions_to_a_named_key(trained, synth_experiment, tmp_path):
    src = synth_experiment.h5ad_paths[0]
    out = infer_file(trained, src, tmp_path / "pred.h5ad", options=InferOptions(seed=3))
    adata, before = ad.read_h5ad(out), ad.read_h5ad(src)
    assert adata.obsm["X_hvg_pred"].shape == before.obsm["X_hvg"].shape
    np.testing.assert_array_equal(adata.obsm["X_hvg"], before.obsm["X_hvg"])  # inputs untouched
    assert np.isfinite(adata.obsm["X_hvg_pred"]).all()
    again = ad.read_h5ad(infer_file(trained, src, tmp_path / "again.h5ad", options=InferOptions(seed=3)))
    np.testing.assert_array_equal(adata.obsm["X_hvg_pred"], again.obsm["X_hvg_pred"])


def test_unknown_perturbation_is_a_clear_error_and_writes_nothing(trained, synth_experiment, tmp_path, capsys):
    adata = ad.read_h5ad(synth_experiment.h5ad_paths[0])
    genes = adata.obs["gene"].astype(str).to_numpy()
    genes[:5] = "NOT_A_GENE"
    adata.obs["gene"] = genes
    src = tmp_path / "bad.h5ad"
    adata.write_h5ad(src)
    with pytest.raises(UnknownLabelError, match="NOT_A_GENE"):
        infer_file(trained, src, tmp_path / "out.h5ad")
    code = main(["tx", "infer", "--model_dir", str(trained), "--adata", str(src), "--output", str(tmp_path / "o.h5ad")])
    err = capsys.readouterr().err
    assert code == 2 and "unknown perturbation" in err and "valid perturbations" in err and "Traceback" not in err
    assert not (tmp_path / "out.h5ad").exists() and not (tmp_path / "o.h5ad").exists()


def test_missing_column_names_the_flag(trained, synth_experiment, tmp_path):
    from state_core.errors import DataError

    with pytest.raises(DataError, match="obs column 'drug'"):
        infer_file(trained, synth_experiment.h5ad_paths[0], tmp_path / "o.h5ad", options=InferOptions(pert_col="drug"))
