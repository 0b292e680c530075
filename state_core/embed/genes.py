"""Gene vocabulary: the per-gene embedding table file and mapping a dataset's genes onto it.

The table is a safetensors file with one tensor per gene symbol (name -> 1-D vector of length E). The
vocabulary order (row i of the lookup table) is kept separately as an ordered list of names, because
safetensors does not keep insertion order; a new table without a list uses sorted names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from state_core.atomic import atomic_path, atomic_write_text
from state_core.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class GeneTable:
    names: list[str]  # vocabulary order
    vectors: torch.Tensor  # [V, E] float32

    @property
    def token_dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def digest(self) -> str:
        """Short hash of the ordered vocabulary; recorded with every model and output."""
        return hashlib.sha256("\n".join(self.names).encode()).hexdigest()[:16]


def save_gene_table(path: str | Path, table: GeneTable) -> None:
    path = Path(path)
    tensors = {name: table.vectors[i].contiguous().clone() for i, name in enumerate(table.names)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"kind": "gene_embeddings"})


def load_gene_table(path: str | Path, order: list[str] | None = None) -> GeneTable:
    """Read a name -> vector safetensors file in `order` (default: sorted names)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"gene embedding table {path} does not exist; pass a safetensors file of gene -> vector")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            names = sorted(keys) if order is None else list(order)
            missing = sorted(set(names) - set(keys))
            if missing:
                raise DataError(
                    f"gene embedding table {path} lacks {len(missing)} genes of the model vocabulary "
                    f"(e.g. {missing[:5]}); use the table the model was trained with"
                )
            vectors = [f.get_tensor(name).float().reshape(-1) for name in names]
    except DataError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise DataError(f"gene embedding table {path} is not a readable safetensors file: {err}") from err
    widths = {v.shape[0] for v in vectors}
    if len(widths) != 1:
        raise DataError(f"gene embedding table {path} mixes vector widths {sorted(widths)}; all genes need one width")
    return GeneTable(names=names, vectors=torch.stack(vectors))


def save_vocab(path: str | Path, names: list[str]) -> None:
    atomic_write_text(path, json.dumps({"genes": names}))


def load_vocab(path: str | Path) -> list[str]:
    return list(json.loads(Path(path).read_text())["genes"])


@dataclass(frozen=True)
class GeneMapping:
    column_vocab_ids: np.ndarray  # [G] vocabulary id per dataset column, -1 if unknown
    source: str  # which var column the names came from

    @property
    def coverage(self) -> float:
        return float((self.column_vocab_ids >= 0).mean()) if len(self.column_vocab_ids) else 0.0

    @property
    def n_mapped(self) -> int:
        return int((self.column_vocab_ids >= 0).sum())


def map_gene_names(names: list[str], vocab_index: dict[str, int], source: str) -> GeneMapping:
    """Exact, case-sensitive symbol match; unknown genes get -1."""
    ids = np.array([vocab_index.get(str(n), -1) for n in names], dtype=np.int64)
    return GeneMapping(column_vocab_ids=ids, source=source)


def check_coverage(mapping: GeneMapping, min_coverage: float, where: str) -> None:
    """Stop when too few dataset genes are known, instead of embedding garbage (original: silent)."""
    log.info(
        "%s: %d of %d genes (%.1f%%) from %s are in the vocabulary",
        where,
        mapping.n_mapped,
        len(mapping.column_vocab_ids),
        100 * mapping.coverage,
        mapping.source,
    )
    if mapping.n_mapped == 0 or mapping.coverage < min_coverage:
        raise DataError(
            f"{where}: only {mapping.n_mapped} of {len(mapping.column_vocab_ids)} genes "
            f"({100 * mapping.coverage:.1f}%) "
            f"in {mapping.source} match the model's gene vocabulary (need {100 * min_coverage:.0f}%); pass "
            f"--gene-column with the var column holding gene symbols, or lower --min-gene-coverage"
        )
