"""Synthetic (real, predicted) AnnData pairs for evaluation tests and the benchmark.

Mirrors the cell-eval trial: negative-binomial counts, every perturbation knocks down the gene that
carries its name and shifts a random programme of genes; real `X` is log1p(normalize_total 1e4) CSR,
the prediction is real + Gaussian noise clipped at 0, stored dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class PairSpec:
    n_genes: int = 2000
    n_perts: int = 20
    cells_per_group: int = 100
    n_programme_genes: int = 100
    knockdown: float = 0.1
    noise_sd: float = 0.1
    pert_col: str = "target_gene"
    control_pert: str = "non-targeting"
    seed: int = 0
    mean_scale: float = 1.0  # multiplies every gene's mean count: lower is sparser
    n_constant_genes: int = 0  # the last genes are zero in every cell (constant: no test has power there)
    n_null_perts: int = 0  # the last perturbations change nothing (no DE genes)


def gene_names(n_genes: int) -> list[str]:
    return [f"GENE{i:04d}" for i in range(n_genes)]


def make_real(spec: PairSpec) -> ad.AnnData:
    """Real data: log1p-normalised CSR float32 with one control and `n_perts` knockdowns."""
    rng = np.random.default_rng(spec.seed)
    genes = gene_names(spec.n_genes)
    base_mean = spec.mean_scale * rng.lognormal(mean=0.0, sigma=1.2, size=spec.n_genes)  # [G]
    if spec.n_constant_genes:
        base_mean[spec.n_genes - spec.n_constant_genes :] = 0.0
    groups = [spec.control_pert] + genes[: spec.n_perts]
    blocks, labels = [], []
    for g_idx, label in enumerate(groups):
        log2fc = np.zeros(spec.n_genes)
        if 0 < g_idx <= spec.n_perts - spec.n_null_perts:
            programme = rng.choice(spec.n_genes, spec.n_programme_genes, replace=False)
            log2fc[programme] = rng.normal(0.0, 1.0, spec.n_programme_genes)
            log2fc[g_idx - 1] = np.log2(spec.knockdown)
        mu = base_mean * np.exp2(log2fc)  # [G]
        dispersion = 2.0
        lam = rng.gamma(dispersion, mu / dispersion, size=(spec.cells_per_group, spec.n_genes))
        blocks.append(rng.poisson(lam))  # [n, G] NB counts
        labels += [label] * spec.cells_per_group
    counts = np.vstack(blocks).astype(np.float64)
    lib = counts.sum(axis=1, keepdims=True)
    lib[lib == 0] = 1.0
    x = np.log1p(counts / lib * 1e4).astype(np.float32)
    obs = pd.DataFrame({spec.pert_col: pd.Categorical(labels)}, index=[f"cell{i}" for i in range(len(labels))])
    return ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))


def make_pred(real: ad.AnnData, spec: PairSpec) -> ad.AnnData:
    """A good model: the real cells plus N(0, noise_sd) noise clipped at 0, dense float32."""
    rng = np.random.default_rng(spec.seed + 1)
    dense = real.X.toarray() if sp.issparse(real.X) else np.asarray(real.X)
    noisy = np.clip(dense + rng.normal(0.0, spec.noise_sd, size=dense.shape), 0.0, None).astype(np.float32)
    return ad.AnnData(X=noisy, obs=real.obs.copy(), var=real.var.copy())


def make_pair(spec: PairSpec) -> tuple[ad.AnnData, ad.AnnData]:
    real = make_real(spec)
    return real, make_pred(real, spec)


def write_pair(spec: PairSpec, real_path: str, pred_path: str) -> None:
    real, pred = make_pair(spec)
    real.write_h5ad(real_path)
    pred.write_h5ad(pred_path)
