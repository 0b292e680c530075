"""Cell sentences: from one cell's expression row to (gene_ids [L], count_feat [L]), in numpy.

Every random choice uses a generator seeded from (seed, global cell index), so a cell's sentence depends
only on the seed and the cell, not on batch size, order or worker count: `emb transform` is deterministic.

Two modes:
* ``compat=True`` reproduces the original sampler for imported weights: ties (incl. all zero genes) broken
  at random, short cells padded with unexpressed genes drawn *with* replacement, and the CLS slot carrying
  the count feature of local gene #``cls_token_idx`` (the "CLS-count quirk").
* ``compat=False`` (new models): the CLS slot's count feature is 0, short cells take every unexpressed gene
  once before any repeat, and a cell whose every gene is expressed never crashes.
Negatives for training are genes with zero expression (compat: log value < 1, as the original).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COUNT_SCALE = 100.0  # count feature = 100 * expression weight


@dataclass(frozen=True)
class SentenceSpec:
    pad_length: int = 2048  # L: sentence length including the CLS slot
    compat: bool = False
    cls_token_idx: int = 3  # compat only: local gene whose weight the CLS slot carries


@dataclass(frozen=True)
class TaskSpec:
    positives: int = 512  # P
    negatives: int = 512  # N
    shared: int = 512  # S: per-batch genes shared by every cell (tabular loss)


@dataclass
class Sentences:
    gene_ids: np.ndarray  # [n, L] int64 vocabulary ids (slot 0 = CLS, id unused by the model)
    count_feat: np.ndarray  # [n, L] float32


@dataclass
class CellGenes:
    """One cell restricted to the genes the vocabulary knows, in dataset column order."""

    vocab_ids: np.ndarray  # [G'] int64
    log_expr: np.ndarray  # [G'] float32, >= 0


def cell_rng(seed: int, cell_index: int) -> np.random.Generator:
    """The generator for one cell; independent streams for different (seed, cell)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(cell_index)])


def to_log_expression(rows: np.ndarray, input_kind: str, target_sum: float | None) -> np.ndarray:
    """Rows [n, G] -> log expression. `raw`: optional library-size scaling to `target_sum`, then log1p.
    `log1p`: used as is. Negative values are clipped to 0 (as the original)."""
    rows = np.clip(np.asarray(rows, dtype=np.float32), 0.0, None)
    if input_kind == "log1p":
        return rows
    if input_kind != "raw":
        raise ValueError(f"input_kind must be 'raw' or 'log1p', got {input_kind!r}")
    if target_sum is not None:
        totals = rows.sum(axis=1, keepdims=True)
        rows = rows * (float(target_sum) / np.where(totals > 0, totals, 1.0))
    return np.log1p(rows)


def expression_weights(log_expr: np.ndarray) -> np.ndarray:
    total = float(log_expr.sum())
    if total <= 0:
        return np.full(log_expr.shape, 1.0 / max(len(log_expr), 1), dtype=np.float32)
    return (log_expr / total).astype(np.float32)


def rank_genes(log_expr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Local indices by expression, highest first; ties broken at random (shuffle, then stable sort)."""
    perm = rng.permutation(len(log_expr))
    return perm[np.argsort(-log_expr[perm], kind="stable")]


def choose_sentence_genes(log_expr: np.ndarray, rng: np.random.Generator, n_slots: int, compat: bool) -> np.ndarray:
    """Local indices of the `n_slots` genes that fill slots 1..L-1."""
    order = rank_genes(log_expr, rng)
    if len(order) >= n_slots:
        return order[:n_slots]
    n_expr = int((log_expr > 0).sum())
    expressed, unexpressed = order[:n_expr], order[n_expr:]
    pool = unexpressed if len(unexpressed) else order  # original crashed when every gene was expressed
    if compat:
        fill = rng.choice(pool, size=n_slots - n_expr, replace=True)
        return np.concatenate([expressed, fill])
    fill = rng.choice(pool, size=n_slots - len(order), replace=True)
    return np.concatenate([order, fill])


def build_sentence(cell: CellGenes, rng: np.random.Generator, spec: SentenceSpec) -> tuple[np.ndarray, np.ndarray]:
    """One cell -> (gene_ids [L] int64, count_feat [L] float32)."""
    n_slots = spec.pad_length - 1
    if len(cell.vocab_ids) == 0:
        raise ValueError("a cell has no gene in the vocabulary")
    weights = expression_weights(cell.log_expr)
    chosen = choose_sentence_genes(cell.log_expr, rng, n_slots, spec.compat)
    gene_ids = np.empty(spec.pad_length, dtype=np.int64)
    count_feat = np.empty(spec.pad_length, dtype=np.float32)
    cls_local = min(spec.cls_token_idx, len(weights) - 1)
    gene_ids[0] = cell.vocab_ids[cls_local] if spec.compat else 0
    gene_ids[1:] = cell.vocab_ids[chosen]
    count_feat[0] = COUNT_SCALE * weights[cls_local] if spec.compat else 0.0
    count_feat[1:] = COUNT_SCALE * weights[chosen]
    return gene_ids, count_feat


def sample_task_genes(
    cell: CellGenes, rng: np.random.Generator, task: TaskSpec, compat: bool
) -> tuple[np.ndarray, np.ndarray]:
    """P positives (expressed) and N negatives (unexpressed) -> (vocab ids [P+N], log targets [P+N])."""
    expr = cell.log_expr
    pos_pool = np.flatnonzero(expr > 0)
    neg_pool = np.flatnonzero(expr < 1.0) if compat else np.flatnonzero(expr == 0)
    everything = np.arange(len(expr))
    if len(neg_pool) == 0:
        neg_pool = everything
    if len(pos_pool) == 0:  # empty cell: its "positives" are more negatives, keeping T fixed
        pos_pool = neg_pool
    pos = rng.choice(pos_pool, size=task.positives, replace=len(pos_pool) < task.positives)
    neg = rng.choice(neg_pool, size=task.negatives, replace=len(neg_pool) < task.negatives)
    local = np.concatenate([pos, neg])
    return cell.vocab_ids[local].astype(np.int64), expr[local].astype(np.float32)


def shared_gene_targets(cells: list[CellGenes], shared_ids: np.ndarray) -> np.ndarray:
    """Each cell's log value at the batch's shared vocabulary ids [S]; 0 where its dataset lacks the gene."""
    out = np.zeros((len(cells), len(shared_ids)), dtype=np.float32)  # [B, S]
    for i, cell in enumerate(cells):
        order = np.argsort(cell.vocab_ids, kind="stable")
        sorted_ids = cell.vocab_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, shared_ids), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[pos] == shared_ids
        out[i, hit] = cell.log_expr[order[pos[hit]]]
    return out


def restrict_to_vocab(log_rows: np.ndarray, column_vocab_ids: np.ndarray) -> list[CellGenes]:
    """Rows [n, G] over dataset columns -> per-cell known genes (columns with id -1 are dropped)."""
    known = column_vocab_ids >= 0
    ids = column_vocab_ids[known].astype(np.int64)
    return [CellGenes(vocab_ids=ids, log_expr=row[known]) for row in log_rows]


def build_sentences(
    log_rows: np.ndarray, column_vocab_ids: np.ndarray, cell_indices: np.ndarray, seed: int, spec: SentenceSpec
) -> Sentences:
    """Sentences for a block of cells; `cell_indices` are global row ids that seed each cell's generator."""
    cells = restrict_to_vocab(log_rows, column_vocab_ids)
    n = len(cells)
    gene_ids = np.empty((n, spec.pad_length), dtype=np.int64)  # [n, L]
    count_feat = np.empty((n, spec.pad_length), dtype=np.float32)  # [n, L]
    for i, (cell, idx) in enumerate(zip(cells, cell_indices)):
        gene_ids[i], count_feat[i] = build_sentence(cell, cell_rng(seed, int(idx)), spec)
    return Sentences(gene_ids=gene_ids, count_feat=count_feat)
