"""Statistics of the training split that fit the non-learned baselines (context_mean, perturb_mean).

Rows are read in blocks straight from the files, so memory is bounded by the block size, not the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from state_core.data.features import open_features
from state_core.data.h5ad import read_obs_labels
from state_core.data.vocab import Vocab
from state_core.errors import ConfigError, Problem

BLOCK_ROWS = 65536


@dataclass(frozen=True)
class GroupMeans:
    sums: np.ndarray  # [C, P, D] sum of features per (cell type, perturbation)
    counts: np.ndarray  # [C, P] number of cells
    sq_sums: np.ndarray | None = None  # [C, P, D] sum of squared features (train_group_means(squares=True))

    def means(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)[..., None]  # [C, P, D]

    def mean_variances(self) -> np.ndarray:
        """Squared standard error of each group mean, var / n per feature [C, P, D] (0 for groups of < 2 cells)."""
        if self.sq_sums is None:
            raise ValueError("these group means were summed without squares: train_group_means(..., squares=True)")
        n = self.counts[..., None].astype(np.float64)
        var = (self.sq_sums - self.sums**2 / np.maximum(n, 1)) / np.maximum(n - 1, 1)
        return np.where(n > 1, np.maximum(var, 0) / np.maximum(n, 1), 0.0)


def _label_index(path: str, column: str, names: tuple[str, ...], rows: np.ndarray) -> np.ndarray:
    labels = read_obs_labels(path, column)
    lookup = np.array([names.index(c) if c in names else -1 for c in labels.categories.astype(str)] + [-1])
    return lookup[labels.codes[rows]]  # -1 code (missing) maps to the appended -1


def train_group_means(manifest, vocab: Vocab, key: str, squares: bool = False) -> GroupMeans:  # noqa: ANN001 - SplitManifest
    """Sum and count of `key` features (X or an obsm key) per (cell type, perturbation) over train rows."""
    n_ct, n_pert = len(vocab.cell_types), len(vocab.perturbations)
    sums: np.ndarray | None = None
    sq_sums: np.ndarray | None = None
    counts = np.zeros((n_ct, n_pert), dtype=np.int64)
    for entry in manifest.files:
        rows = np.asarray(entry.train, dtype=np.int64)
        if rows.size == 0:
            continue
        path = str(entry.path)
        ct = _label_index(path, vocab.cell_type_key, vocab.cell_types, rows)
        pert = _label_index(path, vocab.pert_col, vocab.perturbations, rows)
        with open_features(path, key) as source:
            if sums is None:
                sums = np.zeros((n_ct, n_pert, source.shape[1]), dtype=np.float64)
                sq_sums = np.zeros_like(sums) if squares else None
            for start in range(0, rows.size, BLOCK_ROWS):
                block = slice(start, start + BLOCK_ROWS)
                ok = (ct[block] >= 0) & (pert[block] >= 0)
                x = source.read_rows(rows[block][ok])  # [n, D]
                np.add.at(sums, (ct[block][ok], pert[block][ok]), x)
                if sq_sums is not None:  # float64 squares: the variance is a difference of large sums
                    np.add.at(sq_sums, (ct[block][ok], pert[block][ok]), np.square(x, dtype=np.float64))
                np.add.at(counts, (ct[block][ok], pert[block][ok]), 1)
    if sums is None:
        raise ConfigError(
            manifest.source,
            Problem(
                "training",
                "the train split has no cells, so the baseline has nothing to fit",
                "list a dataset under [training] whose cell types are not all held out, or use a split with train rows",
            ),
        )
    return GroupMeans(sums=sums, sq_sums=sq_sums, counts=counts)


def context_means(stats: GroupMeans, control_index: int) -> np.ndarray:
    """Mean of perturbed (non-control) cells per cell type: [C, D]."""
    sums = stats.sums.copy()
    counts = stats.counts.copy()
    sums[:, control_index] = 0
    counts[:, control_index] = 0
    return (sums.sum(1) / np.maximum(counts.sum(1), 1)[:, None]).astype(np.float32)
