"""clustering_agreement: do real and predicted perturbation centroids cluster the same way?

cell-eval runs scanpy (kNN on raw centroids, UMAP fuzzy graph, igraph Leiden). Importing scanpy and
JIT-compiling umap costs ~20 s, so this module rebuilds the same graph with numpy/scipy/sklearn and
calls igraph's Leiden with scanpy's seeded random generator, which gives the same partitions.
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.sparse as sp

PRED_RESOLUTIONS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0)
# umap-learn constants for the per-point bandwidth search.
SMOOTH_K_TOLERANCE = 1e-5
MIN_K_DIST_SCALE = 1e-3
BANDWIDTH_SEARCH_STEPS = 64


def knn(points: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) [n, k]: each point, then its k - 1 nearest, as scanpy's brute-force path.

    Euclidean distances via |x|^2 + |y|^2 - 2 x.y (clipped at 0), like sklearn; the self distance is
    set to exactly 0 because scanpy zeroes it (sklearn leaves ~1e-7 noise there).
    """
    sq_norm = (points * points).sum(axis=1)
    dist = np.sqrt(np.maximum(sq_norm[:, None] + sq_norm[None, :] - 2.0 * (points @ points.T), 0.0))  # [n, n]
    np.fill_diagonal(dist, 0.0)
    indices = np.argsort(dist, axis=1, kind="stable")[:, :n_neighbors]
    return indices, np.take_along_axis(dist, indices, axis=1)


def _bandwidths(dists: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """umap's smooth_knn_dist with local_connectivity 1: (sigma, rho) per point, float32."""
    target = np.log2(k)
    n = dists.shape[0]
    rho = np.zeros(n, dtype=np.float32)
    sigma = np.zeros(n, dtype=np.float32)
    mean_all = np.mean(dists)
    for i in range(n):
        row = dists[i]
        nonzero = row[row > 0.0]
        if nonzero.size:
            rho[i] = nonzero[0]
        lo, hi, mid = 0.0, np.inf, 1.0
        gaps = (row[1:] - rho[i]).astype(np.float32)  # float32 like umap's numba kernel
        for _ in range(BANDWIDTH_SEARCH_STEPS):
            psum = float(np.where(gaps > 0, np.exp(-(gaps.astype(np.float64) / mid)), 1.0).sum())
            if abs(psum - target) < SMOOTH_K_TOLERANCE:
                break
            if psum > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2 if hi == np.inf else (lo + hi) / 2.0
        sigma[i] = mid
        floor = MIN_K_DIST_SCALE * (np.mean(row) if rho[i] > 0.0 else mean_all)
        if sigma[i] < floor:
            sigma[i] = floor
    return sigma, rho


def fuzzy_graph(indices: np.ndarray, dists: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """umap's fuzzy simplicial set (set_op_mix_ratio 1): symmetric connectivities, float32 CSR."""
    dists = dists.astype(np.float32)
    sigma, rho = _bandwidths(dists, float(n_neighbors))
    n, k = indices.shape
    rows = np.repeat(np.arange(n), k)
    gaps = dists - rho[:, None]  # [n, k]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # those entries become 1 below
        vals = np.exp(-(gaps / sigma[:, None]))
    vals = np.where((gaps <= 0.0) | (sigma[:, None] == 0.0), np.float32(1.0), vals).astype(np.float32)
    vals[indices == np.arange(n)[:, None]] = 0.0
    graph = sp.coo_matrix((vals.ravel(), (rows, indices.ravel())), shape=(n, n))
    graph.eliminate_zeros()
    transpose = graph.transpose()
    union = graph + transpose - graph.multiply(transpose)  # fuzzy union: a + b - ab
    union.eliminate_zeros()
    return union.tocsr()


class _ScanpyIgraphRandom:
    """igraph RNG backed by numpy's RandomState(seed), the generator scanpy installs for Leiden."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.RandomState(seed)

    def getrandbits(self, k: int) -> int:
        return self._rng.tomaxint() & ((1 << k) - 1)

    def randint(self, a: int, b: int) -> int:
        return self._rng.randint(a, b + 1)

    def random(self) -> float:
        return self._rng.random()

    def gauss(self, mu: float, sigma: float) -> float:
        return self._rng.normal(mu, sigma)


def _import_igraph():
    """igraph imports matplotlib.pyplot for plotting when it can (~1 s); Leiden needs none of it."""
    if "igraph" in sys.modules or "matplotlib" in sys.modules:
        import igraph

        return igraph
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # makes `import matplotlib` fail fast
    try:
        import igraph
    finally:
        del sys.modules["matplotlib"]
    return igraph


@contextlib.contextmanager
def _igraph_seed(seed: int) -> Iterator[None]:
    igraph = _import_igraph()

    # igraph's generator is process-wide; restore the default afterwards.
    igraph.set_random_number_generator(_ScanpyIgraphRandom(seed))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def leiden(connectivities: sp.csr_matrix, resolution: float, seed: int = 0) -> np.ndarray:
    """Leiden (modularity, 2 iterations) on the weighted graph, built as scanpy builds it."""
    igraph = _import_igraph()

    sources, targets = connectivities.nonzero()
    weights = np.asarray(connectivities[sources, targets]).ravel()
    graph = igraph.Graph(directed=False)
    graph.add_vertices(connectivities.shape[0])
    graph.add_edges(list(zip(sources.tolist(), targets.tolist(), strict=True)))
    graph.es["weight"] = weights
    with _igraph_seed(seed):
        part = graph.community_leiden(
            objective_function="modularity", weights="weight", resolution=resolution, n_iterations=2
        )
    return np.asarray(part.membership)


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1.0)
    return table  # [classes of a, classes of b]


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _mutual_info(table: np.ndarray) -> float:
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j]
    return float(max(0.0, (nij / n * (np.log(nij) + np.log(n) - np.log(rows[i]) - np.log(cols[j]))).sum()))


def _expected_mutual_info(table: np.ndarray) -> float:
    """E[MI] under random labelings with these cluster sizes (hypergeometric model, Vinh et al. 2010)."""
    from scipy.special import gammaln

    n = int(table.sum())
    a, b = table.sum(axis=1).astype(int), table.sum(axis=0).astype(int)
    total = 0.0
    for ai in a:
        for bj in b:
            nij = np.arange(max(1, ai + bj - n), min(ai, bj) + 1, dtype=np.float64)
            if nij.size == 0:
                continue
            log_p = (
                gammaln(ai + 1) + gammaln(bj + 1) + gammaln(n - ai + 1) + gammaln(n - bj + 1)
                - gammaln(n + 1) - gammaln(nij + 1) - gammaln(ai - nij + 1) - gammaln(bj - nij + 1)
                - gammaln(n - ai - bj + nij + 1)
            )  # fmt: skip
            total += float((nij / n * np.log(n * nij / (ai * bj)) * np.exp(log_p)).sum())
    return total


def adjusted_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """AMI with the arithmetic-mean normaliser (sklearn's default)."""
    table = _contingency(a, b)
    if table.shape[0] == table.shape[1] == 1 or table.shape[0] == table.shape[1] == a.size:
        return 1.0  # identical trivial labelings
    mi, emi = _mutual_info(table), _expected_mutual_info(table)
    normaliser = (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2.0
    denominator = normaliser - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mi - emi) / denominator)


def _agreement(real_labels: np.ndarray, pred_labels: np.ndarray, metric: str) -> float:
    if metric == "ami":
        return adjusted_mutual_info(real_labels, pred_labels)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if metric == "nmi":
        return float(normalized_mutual_info_score(real_labels, pred_labels))
    if metric == "ari":
        return (float(adjusted_rand_score(real_labels, pred_labels)) + 1.0) / 2.0
    raise ValueError(f"unknown clustering agreement metric {metric!r}; use ami, nmi or ari")


def clustering_agreement(
    real_centroids: np.ndarray,
    pred_centroids: np.ndarray,
    *,
    n_neighbors: int = 15,
    real_resolution: float = 1.0,
    pred_resolutions: Sequence[float] = PRED_RESOLUTIONS,
    metric: str = "ami",
) -> float:
    """Best agreement (floored at 0) between Leiden clusters of real centroids and of pred centroids."""
    n = real_centroids.shape[0]
    if n < 3:
        return float("nan")  # a kNN graph needs at least two neighbours besides the point itself
    k = min(n_neighbors, n - 1)

    def graph_of(points: np.ndarray) -> sp.csr_matrix:
        indices, dists = knn(points.astype(np.float64), k)
        return fuzzy_graph(indices, dists, k)

    real_labels = leiden(graph_of(real_centroids), real_resolution)
    pred_graph = graph_of(pred_centroids)
    best = 0.0
    for resolution in pred_resolutions:
        best = max(best, _agreement(real_labels, leiden(pred_graph, resolution), metric))
    return best
