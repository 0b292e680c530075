"""Shared material for the bad-input corpus: one tiny trained run, its ONNX export, a published Triton
repository and a folder of broken files, all built once per session and treated as read-only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import TINY


def _copy_h5ad(src: Path, dst: Path, edit=None) -> Path:  # noqa: ANN001
    shutil.copy(src, dst)
    if edit is not None:
        with h5py.File(dst, "r+") as file:
            edit(file)
    return dst


def _set_obsm(key: str, rows: slice, value: float):
    def edit(file: h5py.File) -> None:
        data = file[f"obsm/{key}"]
        x = data[()]
        x[rows, 0] = value
        data[...] = x

    return edit


def _drop_obs(column: str):
    def edit(file: h5py.File) -> None:
        del file[f"obs/{column}"]
        order = [c for c in file["obs"].attrs["column-order"] if (c.decode() if isinstance(c, bytes) else c) != column]
        file["obs"].attrs["column-order"] = np.array(order, dtype=object) if order else np.array([], dtype="S1")

    return edit


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, synth_experiment):
    """Paths used by the corpus cases (see `placeholders`)."""
    import anndata as ad

    from state_core.config.train_config import parse_overrides
    from state_core.export import export_run
    from state_core.serve.repository import publish_model
    from state_core.train.fit import train_st

    root = tmp_path_factory.mktemp("corpus")
    exp = synth_experiment
    h5 = Path(exp.h5ad_paths[0])
    run = train_st(
        parse_overrides(
            [
                f"data.kwargs.toml_config_path={exp.fewshot_toml}",
                f"output_dir={root / 'runs'}",
                "name=st",
                *TINY,
                "training.max_steps=4",
            ]
        )
    )
    exported = root / "exported"
    export_run(run, exported)
    repo = root / "repo"
    publish_model(repo, "state_st", exported, backend="python")

    bad = root / "bad"
    bad.mkdir()
    raw = bytes(range(256)) * 64
    (bad / "empty.h5ad").write_bytes(b"")
    (bad / "cells.csv").write_text("cell,gene\nc1,A\n")
    (bad / "binary.toml").write_bytes(raw)
    (bad / "random.bin").write_bytes(raw)
    (bad / "truncated.h5ad").write_bytes(h5.read_bytes()[:4096])
    flipped = bytearray(h5.read_bytes())
    flipped[0:8] = b"\x00" * 8  # the HDF5 signature
    (bad / "flipped.h5ad").write_bytes(bytes(flipped))
    _copy_h5ad(h5, bad / "nan.h5ad", _set_obsm("X_hvg", slice(3, 9), np.nan))
    _copy_h5ad(h5, bad / "inf.h5ad", _set_obsm("X_hvg", slice(0, 2), np.inf))
    _copy_h5ad(h5, bad / "no_celltype.h5ad", _drop_obs("cell_type"))
    _copy_h5ad(h5, bad / "no_pert.h5ad", _drop_obs("gene"))
    adata = ad.read_h5ad(h5)
    adata[:0].copy().write_h5ad(bad / "zero_cells.h5ad")
    # a prediction (X differs from the real file's) whose --embed-key matrix holds NaN
    nan_embed = adata.copy()
    nan_embed.X = nan_embed.X * 0.5
    nan_embed.obsm["X_hvg"][3:9, 0] = np.nan
    nan_embed.write_h5ad(bad / "nan_embed_pred.h5ad")
    nan_x = adata.copy()
    nan_x.X = nan_x.X.toarray() if hasattr(nan_x.X, "toarray") else np.array(nan_x.X)
    nan_x.X[:4, :3] = np.nan
    nan_x.write_h5ad(bad / "nan_x.h5ad")
    small = adata[:, :10].copy()
    del small.obsm["X_hvg"]
    small.obsm["X_hvg"] = np.zeros((small.n_obs, 7), dtype=np.float32)
    small.write_h5ad(bad / "narrow.h5ad")
    (bad / "folder.h5ad").mkdir()

    # broken copies of the run folder
    def run_copy(name: str, edit) -> Path:  # noqa: ANN001
        target = root / "runs_bad" / name
        shutil.copytree(run, target)
        edit(target)
        return target

    runs = {
        "corrupt_weights": run_copy("corrupt_weights", lambda r: (r / "model.safetensors").write_bytes(raw)),
        "truncated_weights": run_copy(
            "truncated_weights",
            lambda r: (r / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:200]),
        ),
        "no_weights": run_copy("no_weights", lambda r: (r / "model.safetensors").unlink()),
        "corrupt_ckpt": run_copy("corrupt_ckpt", lambda r: (r / "checkpoints" / "last.ckpt").write_bytes(raw)),
        "truncated_ckpt": run_copy(
            "truncated_ckpt",
            lambda r: (r / "checkpoints" / "last.ckpt").write_bytes(
                (run / "checkpoints" / "last.ckpt").read_bytes()[:1000]
            ),
        ),
        "no_model_json": run_copy("no_model_json", lambda r: (r / "model.json").unlink()),
        "bad_model_json": run_copy("bad_model_json", lambda r: (r / "model.json").write_text("{not json")),
        "bad_vocab": run_copy("bad_vocab", lambda r: (r / "vocab.json").write_bytes(raw)),
        "bad_config": run_copy("bad_config", lambda r: (r / "config.yaml").write_bytes(raw)),
        "no_split": run_copy("no_split", lambda r: shutil.rmtree(r / "split")),
    }

    def point_split_at(target: Path):  # the run's data file deleted or replaced after training
        def edit(r: Path) -> None:
            import dataclasses

            from state_core.data.splits import SplitManifest

            manifest = SplitManifest.load(r / "split")
            files = tuple(dataclasses.replace(f, path=str(target)) for f in manifest.files)
            shutil.rmtree(r / "split")
            dataclasses.replace(manifest, files=files).save(r / "split")

        return edit

    runs["data_deleted"] = run_copy("data_deleted", point_split_at(root / "gone.h5ad"))
    runs["data_replaced"] = run_copy("data_replaced", point_split_at(bad / "zero_cells.h5ad"))
    # a checkpoint of another model size: model.json says hidden_dim 32, the weights are 16 wide
    other = train_st(
        parse_overrides(
            [
                f"data.kwargs.toml_config_path={exp.fewshot_toml}",
                f"output_dir={root / 'runs'}",
                "name=st16",
                *TINY,
                "model.kwargs.hidden_dim=16",
                "training.max_steps=1",
            ]
        )
    )
    runs["other_size"] = run_copy(
        "other_size", lambda r: shutil.copy(other / "model.safetensors", r / "model.safetensors")
    )
    runs["other_size_ckpt"] = run_copy(
        "other_size_ckpt", lambda r: shutil.copy(other / "checkpoints" / "last.ckpt", r / "checkpoints" / "last.ckpt")
    )
    exported_bad = {}
    for name, edit in {
        "random_onnx": lambda d: (d / "model.onnx").write_bytes(raw),
        "no_onnx": lambda d: (d / "model.onnx").unlink(),
        "bad_metadata": lambda d: (d / "metadata.json").write_text("[1, 2]"),
        "no_metadata": lambda d: (d / "metadata.json").unlink(),
    }.items():
        target = root / "exported_bad" / name
        shutil.copytree(exported, target)
        edit(target)
        exported_bad[name] = target
    empty_repo = root / "empty_repo"
    empty_repo.mkdir()
    readonly = root / "readonly"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    # dataset paths made absolute: these TOMLs live in another folder than the data
    toml_text = Path(exp.fewshot_toml).read_text().replace('synth = "synth"', f'synth = "{h5.parent}"', 1)
    tomls = root / "tomls"
    tomls.mkdir()
    # every used cell held out: nothing is left to train on
    (tomls / "empty_train.toml").write_text(f'[datasets]\nsynth = "{h5.parent}"\n\n[zeroshot]\n"synth.K562" = "test"\n')
    (tomls / "missing_dataset.toml").write_text(toml_text.replace(f'synth = "{h5.parent}"', 'synth = "nowhere"', 1))
    (tomls / "bad_syntax.toml").write_text("[datasets\nsynth = ")
    (tomls / "unknown_pert.toml").write_text(toml_text.replace("test = [", 'test = ["NOPE_GENE", '))
    for name, file in (
        ("nan", "nan.h5ad"),
        ("inf", "inf.h5ad"),
        ("nan_x", "nan_x.h5ad"),
        ("csv", "cells.csv"),
        ("no_celltype", "no_celltype.h5ad"),
        ("zero_cells", "zero_cells.h5ad"),
        ("truncated", "truncated.h5ad"),
    ):
        (tomls / f"{name}.toml").write_text(toml_text.replace(f'synth = "{h5.parent}"', f'synth = "{bad / file}"', 1))
    return {
        "exp": exp,
        "exp_root": Path(exp.fewshot_toml).parent,
        "h5": h5,
        "fewshot": Path(exp.fewshot_toml),
        "zeroshot": Path(exp.zeroshot_toml),
        "run": run,
        "exported": exported,
        "repo": repo,
        "bad": bad,
        "runs": runs,
        "exported_bad": exported_bad,
        "empty_repo": empty_repo,
        "readonly": readonly,
        "tomls": tomls,
        "root": root,
    }
