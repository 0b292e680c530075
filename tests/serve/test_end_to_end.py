"""Train a tiny run, export it, publish it, serve it, and compare `tx infer --triton` with local `tx infer`."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from serve_helpers import requires_triton

from state_core.cli.main import main
from state_core.config.train_config import parse_overrides
from state_core.export.metadata import ModelMetadata
from state_core.serve.local_server import free_port
from state_core.train.fit import train_st

pytestmark = requires_triton

TINY = [
    "model=state_sm",
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=8",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=1",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
    "model.kwargs.transformer_backbone_kwargs.intermediate_size=64",
    "training.batch_size=2",
    "training.progress_bar=false",
    "training.max_steps=4",
    "training.val_freq=4",
]


@pytest.fixture(scope="module")
def run_dir(synth_experiment, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train_st(
        parse_overrides(
            [f"data.kwargs.toml_config_path={synth_experiment.fewshot_toml}", f"output_dir={out}", "name=st", *TINY]
        )
    )


def test_cli_export_publish_serve_and_infer_match_local(run_dir, synth_experiment, tmp_path):
    exported, repo = tmp_path / "exported", tmp_path / "repo"
    assert main(["export", "onnx", "--run-dir", str(run_dir), "--out", str(exported)]) == 0
    metadata = ModelMetadata.load(exported / "metadata.json")
    assert metadata.perturbations and "pred_latent" in [t.name for t in metadata.signature.outputs]
    assert main(["export", "triton", "--exported", str(exported), "--repository", str(repo)]) == 0

    adata_path = synth_experiment.h5ad_paths[0]
    small = ad.read_h5ad(adata_path)[:120].copy()
    small_path = tmp_path / "small.h5ad"
    small.write_h5ad(small_path)
    local_out, served_out = tmp_path / "local.h5ad", tmp_path / "served.h5ad"
    assert (
        main(["tx", "infer", "--model-dir", str(run_dir), "--adata", str(small_path), "--output", str(local_out)]) == 0
    )

    port, pid_file = free_port(), tmp_path / "triton.pid"
    assert (
        main(
            [
                "serve",
                "start",
                "--repository",
                str(repo),
                "--grpc-port",
                str(port),
                "--http-port",
                str(free_port()),
                "--work-dir",
                str(tmp_path / "work"),
                "--pid-file",
                str(pid_file),
            ]
        )
        == 0
    )
    try:
        assert main(["serve", "status", "--url", f"127.0.0.1:{port}"]) == 0
        assert (
            main(
                [
                    "tx",
                    "infer",
                    "--model-dir",
                    str(run_dir),
                    "--adata",
                    str(small_path),
                    "--output",
                    str(served_out),
                    "--triton",
                    f"127.0.0.1:{port}",
                ]
            )
            == 0
        )
    finally:
        assert main(["serve", "stop", "--pid-file", str(pid_file)]) == 0
    local, served = ad.read_h5ad(local_out), ad.read_h5ad(served_out)
    key = local.uns["state_infer"]["pred_key"]
    assert np.abs(local.obsm[key] - served.obsm[key]).max() <= 1e-5
