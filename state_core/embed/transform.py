"""`state emb transform`: embed every cell of an h5ad with an SE model, streaming over row blocks.

The output is a copy of the input with `obsm[embed_key]` (float32 [n_cells, o + 10]: the unit-norm cell
embedding, then the 10-d dataset embedding) and `uns[embed_key + "_meta"]` (model id, input kind, seed, ...).
Only the new entries are written into the copy; the rest of the file is never loaded. The copy is
written under a temporary name and renamed at the end.

Input values are interpreted once for the whole file (raw counts or log1p), from `input_kind` or the
model's stored training convention, and the file is checked against that choice block by block;
the original's per-cell guess is gone.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import torch
from tqdm import tqdm

from state_core.data.h5ad import read_var_names
from state_core.embed.artifact import LoadedSE, load_se_model
from state_core.embed.genes import GeneMapping, check_coverage, map_gene_names
from state_core.embed.rows import ExpressionRows
from state_core.embed.sentences import build_sentences, to_log_expression
from state_core.errors import ArtifactError, DataError
from state_core.models.se import SEEncoderGraph

log = logging.getLogger(__name__)

LOG1P_MAX = 35.0  # log1p of a count above ~1.6e15 is implausible; larger values mean raw counts


@dataclass(frozen=True)
class TransformOptions:
    embed_key: str = "X_state"
    input_kind: str | None = None  # raw | log1p; None = the model's training convention
    layer: str | None = None  # read layers/<layer> instead of X (e.g. "counts")
    gene_column: str | None = None  # var column with gene symbols; always wins when given
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    min_gene_coverage: float = 0.5
    progress: bool = True


@dataclass(frozen=True)
class TransformSummary:
    output: Path
    n_cells: int
    dim: int
    genes_mapped: int
    n_genes: int
    model_id: str
    input_kind: str


def resolve_model_dir(path: str | Path) -> Path:
    """An SE model folder, or a `state emb fit` output folder holding one in `model/`."""
    path = Path(path)
    if (path / "model" / "se_config.json").is_file():
        return path / "model"
    if not path.exists():
        raise ArtifactError(f"SE model folder {path} does not exist; pass the folder written by `state emb fit`")
    return path


def check_input_kind(block: np.ndarray, input_kind: str, where: str) -> None:
    """Fail on a file that contradicts the declared input kind, rather than embedding it wrongly."""
    if block.size == 0:
        return
    if input_kind == "raw" and not np.array_equal(block, np.round(block)):
        raise DataError(
            f"{where}: input_kind is 'raw' but the values are not integer counts (log-normalised?); pass "
            f"--input-kind log1p if they are log1p values made the way the model was trained, or --layer counts"
        )
    if input_kind == "log1p" and float(block.max()) > LOG1P_MAX:
        raise DataError(
            f"{where}: input_kind is 'log1p' but values reach {float(block.max()):.0f} (raw counts?); "
            "pass --input-kind raw"
        )


def map_input_genes(loaded: LoadedSE, path: Path, options: TransformOptions) -> GeneMapping:
    names = read_var_names(path, options.gene_column)
    source = f"var[{options.gene_column!r}]" if options.gene_column else "var_names"
    mapping = map_gene_names(names, {g: i for i, g in enumerate(loaded.vocab)}, source)
    check_coverage(mapping, options.min_gene_coverage, str(path))
    return mapping


def embed_blocks(
    loaded: LoadedSE, rows: ExpressionRows, mapping: GeneMapping, input_kind: str, options: TransformOptions
) -> Iterator[np.ndarray]:
    """Yield X_state blocks [b, o + 10] in row order."""
    graph = SEEncoderGraph(loaded.model).to(options.device).eval()
    spec = loaded.meta.sentence
    target_sum = loaded.meta.convention.target_sum
    where = f"{rows.path}:{rows.key}"
    for start in range(0, rows.n_rows, options.batch_size):
        stop = min(start + options.batch_size, rows.n_rows)
        block = rows.read_block(start, stop)  # [b, G]
        check_input_kind(block, input_kind, where)
        log_rows = to_log_expression(block, input_kind, target_sum)
        sentences = build_sentences(log_rows, mapping.column_vocab_ids, np.arange(start, stop), options.seed, spec)
        with torch.inference_mode():
            ids = torch.from_numpy(sentences.gene_ids).to(options.device)
            counts = torch.from_numpy(sentences.count_feat).to(options.device)
            yield graph(ids, counts).float().cpu().numpy()


def write_obsm_dataset(file: h5py.File, key: str, shape: tuple[int, int]) -> h5py.Dataset:
    obsm = file.require_group("obsm")
    if "encoding-type" not in obsm.attrs:
        obsm.attrs["encoding-type"] = "dict"
        obsm.attrs["encoding-version"] = "0.1.0"
    if key in obsm:
        del obsm[key]
    dataset = obsm.create_dataset(key, shape=shape, dtype=np.float32)
    dataset.attrs["encoding-type"] = "array"
    dataset.attrs["encoding-version"] = "0.2.0"
    return dataset


def write_uns_meta(file: h5py.File, key: str, meta: dict) -> None:
    uns = file.require_group("uns")
    if "encoding-type" not in uns.attrs:
        uns.attrs["encoding-type"] = "dict"
        uns.attrs["encoding-version"] = "0.1.0"
    if key in uns:
        del uns[key]
    ad.io.write_elem(uns, key, meta)


def transform_h5ad(
    checkpoint: str | Path, input: str | Path, output: str | Path, options: TransformOptions | None = None, **overrides
) -> TransformSummary:
    """Embed `input` with the SE model at `checkpoint` (model or fit folder); write `output` atomically.

    Keyword overrides are fields of `TransformOptions` (e.g. `seed=1, input_kind="raw"`).
    """
    options = options or TransformOptions()
    if overrides:
        options = replace(options, **overrides)
    source, target = Path(input), Path(output)
    loaded = load_se_model(resolve_model_dir(checkpoint), device=options.device)
    input_kind = options.input_kind or loaded.meta.convention.input_kind
    if input_kind not in ("raw", "log1p"):
        raise DataError(f"input kind {input_kind!r} is not 'raw' or 'log1p'; pass --input-kind raw or log1p")
    rows = ExpressionRows(source, f"layers/{options.layer}" if options.layer else "X")
    mapping = map_input_genes(loaded, source, options)
    if len(mapping.column_vocab_ids) != rows.shape[1]:
        raise DataError(
            f"{source}: var has {len(mapping.column_vocab_ids)} genes but {rows.key} has {rows.shape[1]} columns"
        )
    dim = loaded.meta.config.x_state_dim
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    try:
        with h5py.File(partial, "r+") as file:
            dataset = write_obsm_dataset(file, options.embed_key, (rows.n_rows, dim))
            bar = tqdm(total=rows.n_rows, unit="cell", desc="emb transform", disable=not options.progress)
            start = 0
            for block in embed_blocks(loaded, rows, mapping, input_kind, options):
                dataset[start : start + len(block)] = block
                start += len(block)
                bar.update(len(block))
            bar.close()
            meta = {
                "model_id": loaded.meta.model_id,
                "vocab_digest": loaded.meta.vocab_digest,
                "input_kind": input_kind,
                "seed": options.seed,
                "compat": loaded.meta.sentence.compat,
                "pad_length": loaded.meta.sentence.pad_length,
                "cell_embedding_dim": loaded.meta.config.output_dim,
                "dataset_embedding_dim": dim - loaded.meta.config.output_dim,
                "genes_mapped": mapping.n_mapped,
                "gene_source": mapping.source,
            }
            if loaded.meta.convention.target_sum is not None:
                meta["target_sum"] = float(loaded.meta.convention.target_sum)
            write_uns_meta(file, options.embed_key + "_meta", meta)
        rows.close()
        partial.replace(target)
    except BaseException:
        rows.close()
        partial.unlink(missing_ok=True)
        raise
    log.info("wrote obsm[%r] (%d x %d) to %s", options.embed_key, rows.n_rows, dim, target)
    return TransformSummary(
        target, rows.n_rows, dim, mapping.n_mapped, len(mapping.column_vocab_ids), loaded.meta.model_id, input_kind
    )
