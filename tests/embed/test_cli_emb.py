"""`state emb` command line: transform writes the file; user errors exit 2 without a traceback."""

from __future__ import annotations

import anndata as ad

from state_core.cli.main import main


def test_emb_transform_command(se_model_dir, se_data, tmp_path, capsys):
    out = tmp_path / "out.h5ad"
    code = main(
        [
            "emb",
            "transform",
            "--checkpoint",
            str(se_model_dir),
            "--input",
            str(se_data["b"]),
            "--output",
            str(out),
            "--batch-size",
            "10",
            "--no-progress",
        ]
    )
    assert code == 0 and "24 x 42" in capsys.readouterr().out
    assert ad.read_h5ad(out).obsm["X_state"].shape == (24, 42)


def test_emb_transform_bad_model_folder_exits_2(se_data, tmp_path, capsys):
    code = main(
        [
            "emb",
            "transform",
            "--checkpoint",
            str(tmp_path / "none"),
            "--input",
            str(se_data["b"]),
            "--output",
            str(tmp_path / "o.h5ad"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_emb_fit_bad_config_lists_problems(tmp_path, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("output_dir: x\ndatasets: []\nmodle: {}\n")
    assert main(["emb", "fit", "--conf", str(conf)]) == 2
    err = capsys.readouterr().err
    assert "gene_embeddings: is required" in err and "did you mean 'model'" in err
