"""Bad-input corpus: every `state` command given broken files, wrong flags, bad keys and values.

Each case asserts: the documented exit status (2 for a user mistake), one clear error naming the file,
key or value (the `expect` substrings, case-insensitive), no traceback on stderr, no new or changed file
in the output location (a fresh working folder) and every existing input and output left intact.
Cases run in-process through `state_core.cli.main.main`, sharing the session fixtures of conftest.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, closed_port, run_cli, snapshot


@dataclass(frozen=True)
class Case:
    id: str
    command: str  # `state` arguments; {placeholders} are filled from the corpus fixture
    expect: tuple[str, ...]  # substrings of stderr (case-insensitive)
    code: int = 2


def C(id: str, command: str, *expect: str, code: int = 2) -> Case:  # noqa: A002, N802 - short table rows
    return Case(id, command, expect, code)


TRAIN = "tx train data.kwargs.toml_config_path={fewshot} output_dir={out}/runs name=r training.max_steps=2 " + " ".join(
    TINY
)
INFER = "tx infer --model_dir {run} --output {out}/pred.h5ad"
PREDICT = "tx predict --profile minimal --output_dir"
EVAL = "eval run -o {out}/eval"

CASES = [
    # --- tx train: values -------------------------------------------------------------------------
    C("train-lr-nan", TRAIN + " training.lr=nan", "training.lr", "nan"),
    C("train-lr-inf", TRAIN + " training.lr=inf", "training.lr", "inf"),
    C("train-lr-negative", TRAIN + " training.lr=-1", "training.lr"),
    C("train-lr-zero", TRAIN + " training.lr=0", "training.lr"),
    C("train-lr-text", TRAIN + " training.lr=fast", "training.lr", "invalid value"),
    C("train-clip-negative", TRAIN + " training.gradient_clip_val=-1", "training.gradient_clip_val"),
    C("train-clip-nan", TRAIN + " training.gradient_clip_val=nan", "training.gradient_clip_val"),
    C("train-weight-decay-negative", TRAIN + " training.weight_decay=-0.1", "training.weight_decay"),
    C("train-weight-decay-inf", TRAIN + " training.weight_decay=inf", "training.weight_decay"),
    C("train-batch-size-zero", TRAIN + " training.batch_size=0", "training.batch_size"),
    C("train-batch-size-text", TRAIN + " training.batch_size=abc", "training.batch_size"),
    C("train-max-steps-zero", TRAIN + " training.max_steps=0", "training.max_steps"),
    C("train-val-freq-negative", TRAIN + " training.val_freq=-5", "training.val_freq"),
    C("train-ckpt-every-zero", TRAIN + " training.ckpt_every_n_steps=0", "training.ckpt_every_n_steps"),
    C("train-log-every-zero", TRAIN + " training.log_every_n_steps=0", "training.log_every_n_steps"),
    C("train-threads-negative", TRAIN + " training.num_threads=-1", "training.num_threads"),
    C("train-keep-last-negative", TRAIN + " training.keep_last_checkpoints=-1", "training.keep_last_checkpoints"),
    C("train-warmup-negative", TRAIN + " training.warmup_steps=-1", "training.warmup_steps"),
    C("train-limit-val-negative", TRAIN + " training.limit_val_batches=-1", "training.limit_val_batches"),
    C("train-precision-bogus", TRAIN + " training.precision=bogus", "training.precision", "bogus"),
    C("train-precision-number", TRAIN + " training.precision=8", "training.precision"),
    C("train-accelerator-bogus", TRAIN + " training.accelerator=tpu2", "training.accelerator", "tpu2"),
    C("train-devices-text", TRAIN + " training.devices=abc", "training.devices", "abc"),
    C("train-devices-zero", TRAIN + " training.devices=0", "training.devices"),
    C("train-devices-negative", TRAIN + " training.devices=-3", "training.devices"),
    C("train-schedule-bogus", TRAIN + " training.lr_schedule=linear", "training.lr_schedule", "linear"),
    C("train-seed-text", TRAIN + " training.train_seed=abc", "training.train_seed"),
    # --- tx train: keys ---------------------------------------------------------------------------
    C("train-unknown-key", TRAIN + " training.bogus=1", "training.bogus", "unknown config key"),
    C("train-typo-key", TRAIN + " training.lr_shedule=cosine", "training.lr_shedule", "did you mean"),
    C("train-typo-section", TRAIN + " trainning.lr=1", "trainning.lr", "unknown config key"),
    C("train-not-key-value", TRAIN + " training.lr", "training.lr", "key=value"),
    C("train-group-selection", TRAIN + " data=foo", "data", "config group"),
    C("train-unknown-preset", TRAIN + " model=nonexistent", "nonexistent"),
    C(
        "train-kwargs-typo",
        TRAIN + " model.kwargs.hidden_size=32",
        "model.kwargs.hidden_size",
        "did you mean hidden_dim",
    ),
    C("train-kwargs-unknown", TRAIN + " model.kwargs.bogus_key=1", "model.kwargs.bogus_key"),
    C("train-cell-set-len-zero", TRAIN + " model.kwargs.cell_set_len=0", "model.kwargs.cell_set_len"),
    C(
        "train-backbone-bogus",
        TRAIN + " model.kwargs.transformer_backbone_key=bert",
        "transformer_backbone_key",
        "bert",
    ),
    C("train-backbone-kwarg-unknown", TRAIN + " model.kwargs.transformer_backbone_kwargs.foo=1", "foo"),
    C(
        "train-batch-encoder-no-batches",
        TRAIN + " data.kwargs.batch_col=null model.kwargs.batch_encoder=true",
        "batch_encoder",
    ),
    C("train-run-name-slash", TRAIN + " name=a/b", "name", "a/b"),
    C("train-run-name-dotdot", TRAIN + " name=..", "name"),
    C(
        "train-everything-at-once",
        TRAIN + " training.lr=nan model.kwargs.hidden_size=8 data.kwargs.embed_key=X_nope training.bogus=1",
        "training.lr",
        "model.kwargs.hidden_size",
        "X_nope",
        "training.bogus",
        "4 problems",
    ),
    # --- tx train: data -------------------------------------------------------------------------
    C("train-toml-missing", TRAIN + " data.kwargs.toml_config_path={out}/nope.toml", "nope.toml"),
    C("train-toml-binary", TRAIN + " data.kwargs.toml_config_path={bad}/binary.toml", "binary.toml"),
    C("train-toml-syntax", TRAIN + " data.kwargs.toml_config_path={tomls}/bad_syntax.toml", "bad_syntax.toml", "TOML"),
    C("train-toml-folder", TRAIN + " data.kwargs.toml_config_path={tomls}", "toml_config_path"),
    C("train-toml-empty-train", TRAIN + " data.kwargs.toml_config_path={tomls}/empty_train.toml", "train split"),
    C("train-toml-missing-dataset", TRAIN + " data.kwargs.toml_config_path={tomls}/missing_dataset.toml", "nowhere"),
    C(
        "train-toml-unknown-fewshot-pert",
        TRAIN + " data.kwargs.toml_config_path={tomls}/unknown_pert.toml",
        "NOPE_GENE",
    ),
    C("train-toml-no-path", "tx train output_dir={out}/runs", "data.kwargs.toml_config_path"),
    C("train-embed-key-missing", TRAIN + " data.kwargs.embed_key=X_missing", "X_missing"),
    C("train-pert-col-missing", TRAIN + " data.kwargs.pert_col=nope", "nope"),
    C("train-celltype-col-missing", TRAIN + " data.kwargs.cell_type_key=nope", "nope"),
    C("train-batch-col-missing", TRAIN + " data.kwargs.batch_col=nope", "nope"),
    C("train-control-missing", TRAIN + " data.kwargs.control_pert=nope", "nope"),
    C("train-output-space-bogus", TRAIN + " data.kwargs.output_space=genes", "data.kwargs.output_space", "genes"),
    C("train-mapping-bogus", TRAIN + " data.kwargs.basal_mapping_strategy=x", "data.kwargs.basal_mapping_strategy"),
    C("train-workers-negative", TRAIN + " data.kwargs.num_workers=-1", "data.kwargs.num_workers"),
    C("train-memory-zero", TRAIN + " data.kwargs.memory_budget_gb=0", "data.kwargs.memory_budget_gb"),
    C("train-split-dir-missing", TRAIN + " data.kwargs.split_dir={out}/nosplit", "nosplit"),
    C("train-pert-features-random", TRAIN + " data.kwargs.perturbation_features_file={bad}/random.bin", "random.bin"),
    C(
        "train-pert-features-missing",
        TRAIN + " data.kwargs.perturbation_features_file={out}/none.safetensors",
        "none.safetensors",
    ),
    C("train-nan-features", TRAIN + " data.kwargs.toml_config_path={tomls}/nan.toml", "nan.h5ad", "X_hvg", "6 NaN/Inf"),
    C("train-inf-features", TRAIN + " data.kwargs.toml_config_path={tomls}/inf.toml", "inf.h5ad", "X_hvg", "2 NaN/Inf"),
    C(
        "train-nan-in-x",
        TRAIN + " data.kwargs.toml_config_path={tomls}/nan_x.toml data.kwargs.embed_key=X data.kwargs.output_space=all",
        "nan_x.h5ad",
        "12 NaN/Inf",
    ),
    C("train-data-no-celltype", TRAIN + " data.kwargs.toml_config_path={tomls}/no_celltype.toml", "cell_type"),
    C("train-data-zero-cells", TRAIN + " data.kwargs.toml_config_path={tomls}/zero_cells.toml", "zero_cells.h5ad"),
    C("train-data-truncated", TRAIN + " data.kwargs.toml_config_path={tomls}/truncated.toml", "truncated.h5ad"),
    C("train-data-csv", TRAIN + " data.kwargs.toml_config_path={tomls}/csv.toml", "cells.csv"),
    # --- tx train: output location ----------------------------------------------------------------
    C("train-output-dir-is-file", TRAIN + " output_dir={bad}/cells.csv", "cells.csv", "file"),
    C(
        "train-run-folder-is-file",
        TRAIN.replace("output_dir={out}/runs name=r", "output_dir={bad} name=cells.csv"),
        "cells.csv",
    ),
    C(
        "train-run-folder-foreign",
        TRAIN.replace("output_dir={out}/runs name=r", "output_dir={root} name=bad"),
        "not a run folder",
    ),
    C(
        "train-resume-other-config",
        TRAIN.replace("output_dir={out}/runs name=r", "output_dir={root}/runs name=st") + " model.kwargs.hidden_dim=16",
        "different model/data config",
    ),
    C("train-help-typo", "tx train --hepl", "--hepl"),
    # --- tx predict -------------------------------------------------------------------------------
    C("predict-no-run", PREDICT + " {out}/nope", "nope", "does not exist"),
    C("predict-run-is-file", PREDICT + " {bad}/cells.csv", "cells.csv"),
    C("predict-corrupt-weights", PREDICT + " {runs}/corrupt_weights", "model.safetensors", "corrupt"),
    C("predict-truncated-weights", PREDICT + " {runs}/truncated_weights", "model.safetensors"),
    C("predict-unfinished", PREDICT + " {runs}/no_weights", "not finished", "--checkpoint last"),
    C("predict-corrupt-ckpt", PREDICT + " {runs}/corrupt_ckpt --checkpoint last", "last.ckpt", "corrupt"),
    C("predict-truncated-ckpt", PREDICT + " {runs}/truncated_ckpt --checkpoint last", "last.ckpt"),
    C("predict-unknown-ckpt", PREDICT + " {run} --checkpoint step=999.ckpt", "step=999.ckpt", "available"),
    C("predict-ckpt-path-missing", PREDICT + " {run} --checkpoint {out}/x.ckpt", "x.ckpt"),
    C("predict-no-model-json", PREDICT + " {runs}/no_model_json", "model.json"),
    C("predict-bad-model-json", PREDICT + " {runs}/bad_model_json", "model.json"),
    C("predict-bad-vocab", PREDICT + " {runs}/bad_vocab", "vocab.json"),
    C("predict-bad-config", PREDICT + " {runs}/bad_config", "config.yaml"),
    C("predict-no-split", PREDICT + " {runs}/no_split", "split"),
    C("predict-other-size", PREDICT + " {runs}/other_size", "does not match model.json"),
    C("predict-other-size-ckpt", PREDICT + " {runs}/other_size_ckpt --checkpoint last", "does not match model.json"),
    C("predict-data-deleted", PREDICT + " {runs}/data_deleted", "gone.h5ad", "missing"),
    C("predict-data-replaced", PREDICT + " {runs}/data_replaced", "zero_cells.h5ad", "replaced"),
    C("predict-profile-bogus", PREDICT + " {run} --profile bogus --eval_dir {out}/ev", "bogus"),
    C("predict-eval-dir-is-file", PREDICT + " {run} --eval_dir {bad}/cells.csv", "cells.csv"),
    C("predict-missing-flag", "tx predict", "--output_dir"),
    # --- tx infer ---------------------------------------------------------------------------------
    C("infer-nan", INFER + " --adata {bad}/nan.h5ad", "nan.h5ad", "X_hvg", "6 NaN/Inf"),
    C("infer-inf", INFER + " --adata {bad}/inf.h5ad", "inf.h5ad", "2 NaN/Inf"),
    C("infer-no-celltype-column", INFER + " --adata {bad}/no_celltype.h5ad", "cell_type", "missing"),
    C("infer-celltype-col-typo", INFER + " --adata {h5} --celltype_col cell_typ", "cell_typ", "--celltype_col"),
    C("infer-no-pert-column", INFER + " --adata {bad}/no_pert.h5ad", "'gene'", "missing"),
    C("infer-pert-col-typo", INFER + " --adata {h5} --pert_col genes", "genes"),
    C("infer-embed-key-typo", INFER + " --adata {h5} --embed_key X_hvgg", "X_hvgg"),
    C("infer-narrow-features", INFER + " --adata {bad}/narrow.h5ad", "narrow.h5ad", "expects"),
    C("infer-batch-size-zero", INFER + " --adata {h5} --batch_size 0", "--batch_size"),
    C("infer-batch-size-negative", INFER + " --adata {h5} --batch_size -3", "--batch_size"),
    C("infer-batch-size-text", INFER + " --adata {h5} --batch_size many", "--batch_size"),
    C("infer-basal-bogus", INFER + " --adata {h5} --basal other", "--basal"),
    C("infer-control-typo", INFER + " --adata {h5} --control_pert non-targetting", "non-targetting"),
    C("infer-celltypes-unknown", INFER + " --adata {h5} --celltypes Nope", "Nope"),
    C("infer-truncated", INFER + " --adata {bad}/truncated.h5ad", "truncated.h5ad"),
    C("infer-csv", INFER + " --adata {bad}/cells.csv", "cells.csv", "not an HDF5"),
    C("infer-empty-file", INFER + " --adata {bad}/empty.h5ad", "empty.h5ad", "empty"),
    C("infer-bit-flipped", INFER + " --adata {bad}/flipped.h5ad", "flipped.h5ad"),
    C("infer-zero-cells", INFER + " --adata {bad}/zero_cells.h5ad", "zero_cells.h5ad", "0 cells"),
    C("infer-adata-folder", INFER + " --adata {bad}/folder.h5ad", "folder.h5ad", "folder"),
    C("infer-adata-missing", INFER + " --adata {out}/missing.h5ad", "missing.h5ad", "not found"),
    C("infer-output-is-folder", "tx infer --model_dir {run} --adata {h5} --output {bad}", "--output", "folder"),
    C(
        "infer-output-folder-missing",
        "tx infer --model_dir {run} --adata {h5} --output {out}/no/pred.h5ad",
        "--output",
        "does not exist",
    ),
    C("infer-no-run", "tx infer --model_dir {out}/norun --adata {h5} --output {out}/p.h5ad", "norun"),
    C("infer-run-is-file", "tx infer --model_dir {h5} --adata {h5} --output {out}/p.h5ad", "part0.h5ad"),
    C(
        "infer-corrupt-weights",
        "tx infer --model_dir {runs}/corrupt_weights --adata {h5} --output {out}/p.h5ad",
        "model.safetensors",
    ),
    C(
        "infer-truncated-weights",
        "tx infer --model_dir {runs}/truncated_weights --adata {h5} --output {out}/p.h5ad",
        "model.safetensors",
    ),
    C(
        "infer-other-size",
        "tx infer --model_dir {runs}/other_size --adata {h5} --output {out}/p.h5ad",
        "does not match model.json",
    ),
    C(
        "infer-other-size-ckpt",
        "tx infer --model_dir {runs}/other_size_ckpt --checkpoint last --adata {h5} --output {out}/p.h5ad",
        "does not match model.json",
    ),
    C(
        "infer-corrupt-ckpt",
        "tx infer --model_dir {runs}/corrupt_ckpt --checkpoint last --adata {h5} --output {out}/p.h5ad",
        "last.ckpt",
    ),
    C("infer-unknown-ckpt", INFER + " --adata {h5} --checkpoint nope", "nope.ckpt", "available"),
    C(
        "infer-no-model-json",
        "tx infer --model_dir {runs}/no_model_json --adata {h5} --output {out}/p.h5ad",
        "model.json",
    ),
    C("infer-bad-vocab", "tx infer --model_dir {runs}/bad_vocab --adata {h5} --output {out}/p.h5ad", "vocab.json"),
    C("infer-bad-config", "tx infer --model_dir {runs}/bad_config --adata {h5} --output {out}/p.h5ad", "config.yaml"),
    C("infer-seed-text", INFER + " --adata {h5} --seed abc", "--seed"),
    C("infer-missing-adata-flag", "tx infer --model_dir {run}", "--adata"),
    # --- tx preprocess_train / preprocess_infer / import_arc --------------------------------------
    C(
        "pre-train-nan-counts",
        "tx preprocess_train --adata {bad}/nan_x.h5ad --output {out}/p.h5ad --num_hvgs 10",
        "nan_x.h5ad",
        "NaN/Inf",
    ),
    C(
        "pre-train-missing",
        "tx preprocess_train --adata {out}/none.h5ad --output {out}/p.h5ad --num_hvgs 10",
        "none.h5ad",
    ),
    C(
        "pre-train-truncated",
        "tx preprocess_train --adata {bad}/truncated.h5ad --output {out}/p.h5ad --num_hvgs 10",
        "truncated.h5ad",
    ),
    C("pre-train-csv", "tx preprocess_train --adata {bad}/cells.csv --output {out}/p.h5ad --num_hvgs 10", "cells.csv"),
    C(
        "pre-train-empty",
        "tx preprocess_train --adata {bad}/empty.h5ad --output {out}/p.h5ad --num_hvgs 10",
        "empty.h5ad",
    ),
    C("pre-train-hvgs-zero", "tx preprocess_train --adata {h5} --output {out}/p.h5ad --num_hvgs 0", "num_hvgs"),
    C("pre-train-hvgs-text", "tx preprocess_train --adata {h5} --output {out}/p.h5ad --num_hvgs many", "--num_hvgs"),
    C(
        "pre-train-zero-cells",
        "tx preprocess_train --adata {bad}/zero_cells.h5ad --output {out}/p.h5ad --num_hvgs 10",
        "zero_cells.h5ad",
    ),
    C(
        "pre-infer-control-typo",
        "tx preprocess_infer --adata {h5} --output {out}/p.h5ad --control_condition nope --pert_col gene",
        "nope",
    ),
    C(
        "pre-infer-pert-col-typo",
        "tx preprocess_infer --adata {h5} --output {out}/p.h5ad --control_condition non-targeting --pert_col genes",
        "genes",
    ),
    C(
        "pre-infer-celltype-typo",
        "tx preprocess_infer --adata {h5} --output {out}/p.h5ad --control_condition "
        "non-targeting --pert_col gene --celltype_col celltype",
        "celltype",
    ),
    C(
        "pre-infer-truncated",
        "tx preprocess_infer --adata {bad}/truncated.h5ad --output {out}/p.h5ad "
        "--control_condition non-targeting --pert_col gene",
        "truncated.h5ad",
    ),
    C(
        "pre-infer-csv",
        "tx preprocess_infer --adata {bad}/cells.csv --output {out}/p.h5ad "
        "--control_condition non-targeting --pert_col gene",
        "cells.csv",
    ),
    C(
        "pre-infer-missing",
        "tx preprocess_infer --adata {out}/none.h5ad --output {out}/p.h5ad "
        "--control_condition non-targeting --pert_col gene",
        "none.h5ad",
    ),
    C("import-arc-missing", "tx import_arc --model_dir {out}/nope --output {out}/imp", "nope"),
    C("import-arc-not-arc", "tx import_arc --model_dir {bad} --output {out}/imp", "bad"),
    C("import-arc-output-exists", "tx import_arc --model_dir {bad} --output {run}", "st"),
    # --- data split / synth -----------------------------------------------------------------------
    C("split-toml-missing", "data split --toml {out}/nope.toml --out {out}/split", "nope.toml"),
    C("split-toml-binary", "data split --toml {bad}/binary.toml --out {out}/split", "binary.toml"),
    C("split-toml-syntax", "data split --toml {tomls}/bad_syntax.toml --out {out}/split", "bad_syntax.toml"),
    C("split-toml-missing-dataset", "data split --toml {tomls}/missing_dataset.toml --out {out}/split", "nowhere"),
    C("split-pert-col-typo", "data split --toml {fewshot} --out {out}/split --pert-col genes", "genes"),
    C("split-celltype-typo", "data split --toml {fewshot} --out {out}/split --cell-type-key celltype", "celltype"),
    C("split-control-typo", "data split --toml {fewshot} --out {out}/split --control-pert nope", "nope"),
    C("split-batch-typo", "data split --toml {fewshot} --out {out}/split --batch-col batches", "batches"),
    C("split-unknown-fewshot-pert", "data split --toml {tomls}/unknown_pert.toml --out {out}/split", "NOPE_GENE"),
    C("split-data-truncated", "data split --toml {tomls}/truncated.toml --out {out}/split", "truncated.h5ad"),
    C("split-data-csv", "data split --toml {tomls}/csv.toml --out {out}/split", "cells.csv"),
    C("split-data-zero-cells", "data split --toml {tomls}/zero_cells.toml --out {out}/split", "zero_cells.h5ad"),
    C("split-data-no-celltype", "data split --toml {tomls}/no_celltype.toml --out {out}/split", "cell_type"),
    C("split-out-is-file", "data split --toml {fewshot} --out {bad}/cells.csv", "cells.csv"),
    C("split-seed-text", "data split --toml {fewshot} --out {out}/split --seed abc", "--seed"),
    C("synth-zero-cells", "data synth --out {out}/s --n-cells 0", "n_cells"),
    C("synth-negative-genes", "data synth --out {out}/s --n-genes -5", "n_genes"),
    C("synth-zero-perts", "data synth --out {out}/s --n-perturbations 0", "n_perturbations"),
    C("synth-out-is-file", "data synth --out {bad}/cells.csv --n-cells 50", "cells.csv", "--out"),
    C("synth-cells-text", "data synth --out {out}/s --n-cells many", "--n-cells"),
    # --- eval -------------------------------------------------------------------------------------
    C("eval-nan-pred", EVAL + " -ap {bad}/nan_x.h5ad -ar {h5}", "nan_x.h5ad", "NaN/Inf"),
    C("eval-nan-real", EVAL + " -ap {h5} -ar {bad}/nan_x.h5ad", "nan_x.h5ad", "NaN/Inf"),
    C(
        "eval-nan-embed",
        EVAL + " -ap {bad}/nan_embed_pred.h5ad -ar {h5} --embed-key X_hvg",
        "nan_embed_pred.h5ad",
        "obsm/X_hvg",
        "NaN/Inf",
    ),
    C("eval-pred-missing", EVAL + " -ap {out}/none.h5ad -ar {h5}", "none.h5ad"),
    C("eval-pred-truncated", EVAL + " -ap {bad}/truncated.h5ad -ar {h5}", "truncated.h5ad"),
    C("eval-pred-csv", EVAL + " -ap {bad}/cells.csv -ar {h5}", "cells.csv"),
    C("eval-real-empty", EVAL + " -ap {h5} -ar {bad}/empty.h5ad", "empty.h5ad"),
    C("eval-pred-zero-cells", EVAL + " -ap {bad}/zero_cells.h5ad -ar {h5}", "zero_cells.h5ad"),
    C("eval-inf-pred", EVAL + " -ap {bad}/inf.h5ad -ar {h5} --embed-key X_hvg", "inf.h5ad"),
    C("eval-profile-bogus", EVAL + " -ap {h5} -ar {h5} --profile bogus", "--profile"),
    C("eval-pert-col-typo", EVAL + " -ap {h5} -ar {h5} --pert-col genes", "genes"),
    C("eval-control-typo", EVAL + " -ap {h5} -ar {h5} --control-pert nope", "nope"),
    C("eval-score-missing", "eval score -i {out}/a.csv -I {out}/b.csv -o {out}/d.csv", "a.csv"),
    C("eval-score-binary", "eval score -i {bad}/random.bin -I {bad}/random.bin -o {out}/d.csv", "random.bin"),
    C("eval-baseline-nan", "eval baseline -a {bad}/nan_x.h5ad -o {out}/b.h5ad -O {out}/b.csv", "nan_x.h5ad", "NaN/Inf"),
    C("eval-baseline-missing", "eval baseline -a {out}/none.h5ad -o {out}/b.h5ad -O {out}/b.csv", "none.h5ad"),
    C(
        "eval-baseline-truncated",
        "eval baseline -a {bad}/truncated.h5ad -o {out}/b.h5ad -O {out}/b.csv",
        "truncated.h5ad",
    ),
    C("eval-report-missing", "eval report {out}/nope", "nope"),
    # --- export -----------------------------------------------------------------------------------
    C("onnx-no-run", "export onnx --run-dir {out}/nope --out {out}/e", "nope"),
    C("onnx-corrupt-weights", "export onnx --run-dir {runs}/corrupt_weights --out {out}/e", "model.safetensors"),
    C("onnx-other-size", "export onnx --run-dir {runs}/other_size --out {out}/e", "does not match model.json"),
    C("onnx-unfinished", "export onnx --run-dir {runs}/no_weights --out {out}/e", "not finished"),
    C("onnx-unknown-ckpt", "export onnx --run-dir {run} --out {out}/e --checkpoint nope", "nope.ckpt"),
    C("onnx-corrupt-ckpt", "export onnx --run-dir {runs}/corrupt_ckpt --checkpoint last --out {out}/e", "last.ckpt"),
    C("onnx-tolerance-text", "export onnx --run-dir {run} --out {out}/e --tolerance tiny", "--tolerance"),
    C(
        "triton-random-onnx",
        "export triton --exported {exported_bad}/random_onnx --repository {out}/repo",
        "model.onnx",
    ),
    C("triton-no-onnx", "export triton --exported {exported_bad}/no_onnx --repository {out}/repo", "model.onnx"),
    C(
        "triton-bad-metadata",
        "export triton --exported {exported_bad}/bad_metadata --repository {out}/repo",
        "metadata.json",
    ),
    C(
        "triton-no-metadata",
        "export triton --exported {exported_bad}/no_metadata --repository {out}/repo",
        "metadata.json",
    ),
    C("triton-no-export", "export triton --exported {out}/nope --repository {out}/repo", "nope"),
    C("triton-run-not-export", "export triton --exported {run} --repository {out}/repo", "metadata.json"),
    C(
        "triton-bad-model-name",
        "export triton --exported {exported} --repository {out}/repo --model-name bad/name",
        "bad/name",
    ),
    C(
        "triton-keep-last-zero",
        "export triton --exported {exported} --repository {out}/repo --keep-last 0",
        "keep_last",
    ),
    C("triton-backend-bogus", "export triton --exported {exported} --repository {out}/repo --backend tf", "--backend"),
    C("rollback-missing-version", "export rollback --repository {repo} --version 99", "99"),
    C("rollback-no-repo", "export rollback --repository {out}/nope --version 1", "nope"),
    C("rollback-version-text", "export rollback --repository {repo} --version latest", "--version"),
    # --- serve ------------------------------------------------------------------------------------
    C("serve-start-no-repo", "serve start --repository {out}/nope", "nope", "does not exist"),
    C("serve-start-empty-repo", "serve start --repository {empty_repo}", "empty_repo", "config.pbtxt"),
    C("serve-start-repo-is-file", "serve start --repository {bad}/cells.csv", "cells.csv", "is a file"),
    C("serve-start-public-host", "serve start --repository {repo} --host 0.0.0.0", "0.0.0.0", "loopback"),
    C("serve-start-port-text", "serve start --repository {repo} --grpc-port high", "--grpc-port"),
    C("serve-start-pid-file-folder", "serve start --repository {repo} --pid-file {bad}", "--pid-file"),
    C("serve-stop-nothing", "serve stop", "--pid"),
    C("serve-stop-pid-file-missing", "serve stop --pid-file {out}/none.pid", "none.pid"),
    C("serve-stop-pid-file-garbage", "serve stop --pid-file {bad}/random.bin", "random.bin"),
    C("serve-stop-pid-file-text", "serve stop --pid-file {bad}/cells.csv", "cells.csv", "not a process id"),
    C("serve-stop-init", "serve stop --pid 1", "pid 1"),
    C("serve-stop-self", "serve stop --pid {self_pid}", "{self_pid}", "not a tritonserver"),
    C("serve-status-unreachable", "serve status --url 127.0.0.1:{closed_port} --timeout 0.5", "127.0.0.1"),
    # --- emb --------------------------------------------------------------------------------------
    C("emb-fit-conf-missing", "emb fit --conf {out}/nope.yaml", "nope.yaml"),
    C("emb-fit-conf-binary", "emb fit --conf {bad}/binary.toml", "binary.toml"),
    C("emb-transform-no-model", "emb transform --checkpoint {out}/nope --input {h5} --output {out}/e.h5ad", "nope"),
    C("emb-transform-not-se", "emb transform --checkpoint {run} --input {h5} --output {out}/e.h5ad", "st"),
    C("emb-export-no-model", "emb export --checkpoint {out}/nope --output {out}/x", "nope"),
    C("emb-import-no-folder", "emb import --model-folder {out}/nope --output {out}/x", "nope"),
    # --- pipeline ---------------------------------------------------------------------------------
    C(
        "pipeline-compile-digest-text",
        "pipeline compile --out {out}/t.yaml --image-digest latest",
        "latest",
        "--image-digest",
    ),
    C(
        "pipeline-compile-two-digests",
        "pipeline compile --out {out}/t.yaml --image-digest sha256:"
        + "a" * 64
        + " --image reg.local/s@sha256:"
        + "b" * 64,
        "--image",
        "reg.local/s",
    ),
    # --- top level --------------------------------------------------------------------------------
    C("unknown-group", "bogus", "bogus"),
    C("unknown-tx-command", "tx bogus", "bogus"),
    C("unknown-flag", "tx predict --output_dir {run} --bogus", "--bogus"),
]


@pytest.fixture(scope="session")
def placeholders(corpus) -> dict[str, str]:
    values = {k: str(v) for k, v in corpus.items() if isinstance(v, (str, Path))}
    values.update(
        runs=str(corpus["root"] / "runs_bad"),
        exported_bad=str(corpus["root"] / "exported_bad"),
        fewshot=str(corpus["fewshot"]),
        self_pid=str(os.getpid()),
        closed_port=str(closed_port()),
    )
    return values


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_error_and_changes_nothing(case: Case, corpus, placeholders, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    values = {**placeholders, "out": str(out)}
    argv = [part.format(**values) for part in case.command.split()]
    watched = (corpus["root"], corpus["exp_root"])
    before = snapshot(*watched)
    threads = torch.get_num_threads()
    result = run_cli(argv)
    torch.set_num_threads(threads)
    assert result.code == case.code, f"exit {result.code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.lower()
    assert "error" in message, result.stderr
    for text in case.expect:
        assert text.format(**values).lower() in message, f"{text!r} not in:\n{result.stderr}"
    assert snapshot(*watched) == before, "an existing file was changed, added or removed"
    assert not any(out.iterdir()), f"output written: {sorted(p.name for p in out.iterdir())}"
    assert not any(cwd.iterdir()), f"written into the working folder: {sorted(p.name for p in cwd.iterdir())}"
