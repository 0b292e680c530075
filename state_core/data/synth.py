"""Synthetic Perturb-seq data: realistic raw counts with known ground truth.

The generative model, per cell `c` of cell type `t`, batch `b`, perturbation `p` and gene `g`:

    mean[c, g] = library[c] * base[t, g] * batch_factor[b, g] * response[p, t, g]
    counts[c, g] ~ NegativeBinomial(mean, dispersion theta[g])

`base` comes from a log-normal gene expression level plus a cell-type log-fold change. A perturbation
knocks its own target gene down (perturbation name == gene name) and moves one or two shared
"programmes" (gene sets) up or down; the programme part is scaled by a cell-type response strength.
Group sizes are deliberately uneven so loaders see groups smaller and much larger than a cell set.
Everything is drawn from one seeded generator, so the same `SynthSpec` always gives the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from state_core.atomic import atomic_write_text
from state_core.config.toml_writer import dumps
from state_core.errors import DataError

_CELL_TYPE_NAMES = ("K562", "RPE1", "Jurkat", "HepG2", "HEK293T", "A549", "MCF7", "HeLa")
_CELLS_PER_CHUNK = 8192  # bounds peak memory of the dense count draw: chunk x n_genes float64


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic dataset. Same spec -> identical AnnData."""

    n_cells: int = 3000
    n_genes: int = 300
    n_cell_types: int = 3
    n_perturbations: int = 12
    n_batches: int = 2
    control_fraction: float = 0.1
    seed: int = 0
    pert_col: str = "gene"
    cell_type_key: str = "cell_type"
    batch_col: str = "gem_group"
    control_pert: str = "non-targeting"
    sparse: bool = True
    # Expression model.
    mean_log_expression: float = -1.0  # log of the median gene's mean count per cell (before library size)
    sd_log_expression: float = 1.5  # spread of gene expression levels (log scale)
    library_size_sd: float = 0.35  # log-normal sd of per-cell library size factors
    mean_dispersion: float = 3.0  # NB theta (inverse overdispersion); smaller = noisier
    cell_type_effect_sd: float = 0.6  # log-fold change sd of each cell type's baseline
    batch_effect_sd: float = 0.2  # log-fold change sd of the multiplicative batch effect
    # Perturbation model.
    n_programmes: int = 4
    programme_fraction: float = 0.06  # share of genes in each programme
    programme_effect: float = 1.0  # typical |log-fold change| of a programme
    knockdown_residual: tuple[float, float] = (0.05, 0.3)  # remaining fraction of the target's expression
    response_strength: tuple[float, float] = (0.5, 1.5)  # cell-type scaling of programme effects
    group_size_sd: float = 0.9  # log-normal sd of perturbation group weights (unevenness)
    # Log-normal sd of a gain per (cell type, programme): how strongly a cell type's programme responds,
    # the same for every perturbation that moves it. 0 = every cell type responds alike (up to its strength).
    programme_gain_sd: float = 0.0
    n_cell_types_without_controls: int = 0  # the last k cell types get no control cells (edge case)
    shuffle_rows: bool = True  # False keeps rows sorted by (cell type, batch, perturbation)
    # None: cells are drawn from the same stream as the ground truth. An int draws a fresh sample of cells
    # (labels and counts) from the SAME ground truth (same `seed`): new cells of the same biology.
    cell_seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.n_cells < 1 or self.n_genes < 1:
            problems.append(f"n_cells={self.n_cells} and n_genes={self.n_genes} must be >= 1")
        if not 1 <= self.n_perturbations <= self.n_genes:
            problems.append(f"n_perturbations={self.n_perturbations} must be in [1, n_genes={self.n_genes}]")
        if self.n_cell_types < 1 or self.n_batches < 1:
            problems.append("n_cell_types and n_batches must be >= 1")
        if not 0.0 < self.control_fraction < 1.0:
            problems.append(f"control_fraction={self.control_fraction} must be in (0, 1)")
        if self.programme_gain_sd < 0:
            problems.append(f"programme_gain_sd={self.programme_gain_sd} must be >= 0")
        if not 0 <= self.n_cell_types_without_controls < self.n_cell_types:
            problems.append("n_cell_types_without_controls must be in [0, n_cell_types)")
        if problems:
            raise DataError("invalid SynthSpec: " + "; ".join(problems))

    @property
    def cell_types(self) -> list[str]:
        if self.n_cell_types <= len(_CELL_TYPE_NAMES):
            return list(_CELL_TYPE_NAMES[: self.n_cell_types])
        return [f"CT{i}" for i in range(self.n_cell_types)]

    @property
    def batches(self) -> list[str]:
        return [f"gem{i + 1}" for i in range(self.n_batches)]

    @property
    def gene_names(self) -> list[str]:
        return [f"GENE{i:05d}" for i in range(self.n_genes)]


@dataclass(frozen=True)
class _GroundTruth:
    """Parameters drawn once per spec; the count matrix is sampled from them."""

    log_base: np.ndarray  # [T, G] log mean count per cell type
    log_batch: np.ndarray  # [B, G]
    log_response: np.ndarray  # [P + 1, T, G]; row 0 is the control (all zeros)
    theta: np.ndarray  # [G]
    perturbations: list[str]  # target gene names, in perturbation order
    programmes: dict[str, np.ndarray]  # programme name -> gene indices


def _draw_ground_truth(spec: SynthSpec, rng: np.random.Generator) -> _GroundTruth:
    n_t, n_b, n_p, n_g = spec.n_cell_types, spec.n_batches, spec.n_perturbations, spec.n_genes
    gene_level = rng.normal(spec.mean_log_expression, spec.sd_log_expression, n_g)  # [G]
    log_base = gene_level[None, :] + rng.normal(0.0, spec.cell_type_effect_sd, (n_t, n_g))  # [T, G]
    log_batch = rng.normal(0.0, spec.batch_effect_sd, (n_b, n_g))  # [B, G]
    theta = spec.mean_dispersion * rng.lognormal(0.0, 0.3, n_g)  # [G]

    # Targets come from the better-expressed half so the knockdown is observable in counts.
    expressed = np.argsort(-gene_level)[: max(n_p, n_g // 2)]
    targets = np.sort(rng.choice(expressed, size=n_p, replace=False))
    programme_size = max(3, int(round(spec.programme_fraction * n_g)))
    programmes = {
        f"programme_{k}": np.sort(rng.choice(n_g, size=min(programme_size, n_g), replace=False))
        for k in range(spec.n_programmes)
    }
    strength = rng.uniform(*spec.response_strength, n_t)  # [T]

    log_response = np.zeros((n_p + 1, n_t, n_g))  # [P + 1, T, G]
    programme_genes = list(programmes.values())
    # Drawn from a separate stream so that programme_gain_sd=0 leaves every other draw as it was.
    gain_rng = np.random.default_rng([spec.seed, 104729])
    gain = np.exp(gain_rng.normal(0.0, spec.programme_gain_sd, (n_t, len(programme_genes))))  # [T, K]
    for p in range(n_p):
        shift = np.zeros((n_t, n_g))  # [T, G]
        if programme_genes:
            chosen = rng.choice(len(programme_genes), size=min(len(programme_genes), rng.integers(1, 3)), replace=False)
            for k in chosen:
                sign = rng.choice([-1.0, 1.0])
                effect = sign * abs(rng.normal(spec.programme_effect, 0.3 * spec.programme_effect))
                shift[:, programme_genes[k]] += gain[:, k, None] * effect
        log_response[p + 1] = strength[:, None] * shift
        # The knockdown acts on the target itself, independently of the cell type's programme strength.
        log_response[p + 1, :, targets[p]] = np.log(rng.uniform(*spec.knockdown_residual))
    gene_names = spec.gene_names
    return _GroundTruth(
        log_base=log_base,
        log_batch=log_batch,
        log_response=log_response,
        theta=theta,
        perturbations=[gene_names[t] for t in targets],
        programmes=programmes,
    )


def _draw_labels(spec: SynthSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell type, batch and perturbation codes per cell (perturbation 0 = control). Uneven group sizes."""
    n_t, n_b, n_p = spec.n_cell_types, spec.n_batches, spec.n_perturbations
    type_weights = rng.lognormal(0.0, 0.3, n_t)
    per_type = rng.multinomial(spec.n_cells, type_weights / type_weights.sum())  # [T]
    ct_codes, batch_codes, pert_codes = [], [], []
    for t in range(n_t):
        # Each cell type has its own perturbation abundance profile: some groups tiny, some large.
        pert_weights = rng.lognormal(0.0, spec.group_size_sd, n_p)
        per_batch = rng.multinomial(per_type[t], np.full(n_b, 1.0 / n_b))  # [B]
        has_controls = t < n_t - spec.n_cell_types_without_controls
        for b in range(n_b):
            n = int(per_batch[b])
            n_ctrl = min(n, max(2, int(round(spec.control_fraction * n)))) if has_controls else 0
            per_pert = rng.multinomial(n - n_ctrl, pert_weights / pert_weights.sum())  # [P]
            counts = np.concatenate([[n_ctrl], per_pert])
            pert_codes.append(np.repeat(np.arange(n_p + 1), counts))
            ct_codes.append(np.full(n, t))
            batch_codes.append(np.full(n, b))
    cts, bs, ps = (np.concatenate(a).astype(np.int64) for a in (ct_codes, batch_codes, pert_codes))
    if spec.shuffle_rows:
        order = rng.permutation(spec.n_cells)
        cts, bs, ps = cts[order], bs[order], ps[order]
    return cts, bs, ps


def _sample_counts(
    spec: SynthSpec, truth: _GroundTruth, cts: np.ndarray, bs: np.ndarray, ps: np.ndarray, rng: np.random.Generator
) -> sp.csr_matrix | np.ndarray:
    log_library = rng.normal(0.0, spec.library_size_sd, spec.n_cells)  # [N]
    # Log mean per (perturbation, cell type, batch) group; cells only add their library size.
    log_group = (
        truth.log_response[:, :, None, :] + truth.log_base[None, :, None, :] + truth.log_batch[None, None, :, :]
    )  # [P + 1, T, B, G]
    theta = truth.theta.astype(np.float32)  # [G]
    # Fold 1/theta into the group means once, so the per-cell work is one exp and two draws.
    log_scale = (log_group - np.log(truth.theta)).astype(np.float32)  # [P + 1, T, B, G]
    blocks = []
    for start in range(0, spec.n_cells, _CELLS_PER_CHUNK):
        stop = min(start + _CELLS_PER_CHUNK, spec.n_cells)
        scale = np.exp(
            log_scale[ps[start:stop], cts[start:stop], bs[start:stop]] + log_library[start:stop, None]
        )  # [n, G]
        # Gamma-Poisson mixture == negative binomial with mean theta * scale and dispersion theta.
        shape = np.broadcast_to(theta, scale.shape)
        rate = rng.standard_gamma(shape, dtype=np.float32) * scale  # [n, G]
        chunk = rng.poisson(rate).astype(np.float32)  # [n, G]
        blocks.append(sp.csr_matrix(chunk) if spec.sparse else chunk)
    if spec.sparse:
        matrix = sp.vstack(blocks, format="csr")
        matrix.sort_indices()
        return matrix
    return np.concatenate(blocks, axis=0)


def make_synthetic_adata(spec: SynthSpec) -> ad.AnnData:
    """Raw NB counts in `X` (float32, CSR unless `spec.sparse` is False) with categorical obs labels.

    `uns["synth"]` records the perturbations (target genes) and programme gene sets as ground truth.
    """
    rng = np.random.default_rng(spec.seed)
    truth = _draw_ground_truth(spec, rng)
    if spec.cell_seed is not None:
        rng = np.random.default_rng([spec.seed, spec.cell_seed])
    cts, bs, ps = _draw_labels(spec, rng)
    X = _sample_counts(spec, truth, cts, bs, ps, rng)

    pert_names = [spec.control_pert, *truth.perturbations]
    obs = pd.DataFrame(
        {
            spec.pert_col: pd.Categorical.from_codes(ps, categories=pert_names),
            spec.cell_type_key: pd.Categorical.from_codes(cts, categories=spec.cell_types),
            spec.batch_col: pd.Categorical.from_codes(bs, categories=spec.batches),
        },
        index=pd.Index([f"cell_{i:07d}" for i in range(spec.n_cells)], name="cell_barcode"),
    )
    var = pd.DataFrame({"gene_name": spec.gene_names}, index=pd.Index(spec.gene_names, name="gene_id"))
    gene_names = np.asarray(spec.gene_names)
    uns = {
        "synth": {
            "seed": spec.seed,
            "perturbations": np.asarray(truth.perturbations),
            "programmes": {name: gene_names[idx] for name, idx in truth.programmes.items()},
        }
    }
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)


# ---------------------------------------------------------------------------------------------------
# Experiment folder: preprocessed h5ad file(s) + the two TOML configs in the original README format.


@dataclass(frozen=True)
class SynthExperiment:
    """What `write_synthetic_experiment` wrote, plus the labels its TOMLs hold out."""

    h5ad_paths: list[Path]
    zeroshot_toml: Path
    fewshot_toml: Path
    spec: SynthSpec
    dataset_name: str = "synth"
    dataset_dir: Path = Path(".")
    zeroshot_test_cell_type: str = ""
    zeroshot_val_cell_type: str | None = None
    fewshot_cell_type: str = ""
    fewshot_val_perts: list[str] = field(default_factory=list)
    fewshot_test_perts: list[str] = field(default_factory=list)


def _add_embedding(adata: ad.AnnData, key: str, dim: int, seed: int) -> None:
    """A dense, deterministic low-dimensional embedding (random projection of X_hvg) for embed_key tests."""
    hvg = adata.obsm["X_hvg"]
    rng = np.random.default_rng(seed + 7919)
    projection = rng.normal(0.0, 1.0 / np.sqrt(hvg.shape[1]), (hvg.shape[1], dim)).astype(np.float32)  # [K, E]
    adata.obsm[key] = (hvg @ projection).astype(np.float32)  # [N, E]


def write_synthetic_experiment(
    out_dir: str | Path,
    spec: SynthSpec,
    num_hvgs: int = 64,
    n_files: int = 1,
    dataset_name: str = "synth",
    embed_key: str | None = "X_state",
    embed_dim: int = 16,
    with_val_cell_type: bool = True,
) -> SynthExperiment:
    """Write `<out_dir>/<dataset_name>/part<i>.h5ad` (preprocessed, rows split across `n_files`),
    `zeroshot.toml` and `fewshot.toml` (dataset paths relative to the TOML files).

    Each file holds log-normalised `X`, raw counts in `layers["counts"]`, `obsm["X_hvg"]` and, unless
    `embed_key` is None, a small dense embedding `obsm[embed_key]`.
    """
    from state_core.atomic import write_h5ad_atomic
    from state_core.data.preprocess import preprocess_train_adata

    if n_files < 1 or n_files > spec.n_cells:
        raise DataError(f"n_files={n_files} must be between 1 and n_cells={spec.n_cells}")
    out_dir = Path(out_dir)
    data_dir = out_dir / dataset_name
    data_dir.mkdir(parents=True, exist_ok=True)

    adata = preprocess_train_adata(make_synthetic_adata(spec), num_hvgs=num_hvgs)
    if embed_key:
        _add_embedding(adata, embed_key, embed_dim, spec.seed)
    bounds = np.linspace(0, adata.n_obs, n_files + 1).astype(int)
    paths = []
    for i in range(n_files):
        path = data_dir / f"part{i}.h5ad"
        write_h5ad_atomic(adata[bounds[i] : bounds[i + 1]].copy(), path)
        paths.append(path)

    cell_types = spec.cell_types
    perts = [str(p) for p in adata.uns["synth"]["perturbations"]]
    test_ct = cell_types[-1]
    val_ct = cell_types[-2] if with_val_cell_type and len(cell_types) >= 3 else None
    fewshot_ct = cell_types[0]
    n_hold = max(1, len(perts) // 4)
    fewshot_val, fewshot_test = perts[:n_hold], perts[n_hold : 2 * n_hold] or perts[:n_hold]

    base = {"datasets": {dataset_name: dataset_name}, "training": {dataset_name: "train"}}
    zeroshot = dumps(
        {
            **base,
            "zeroshot": {
                f"{dataset_name}.{test_ct}": "test",
                **({f"{dataset_name}.{val_ct}": "val"} if val_ct is not None else {}),
            },
        }
    )
    fewshot = dumps({**base, "fewshot": {f"{dataset_name}.{fewshot_ct}": {"val": fewshot_val, "test": fewshot_test}}})
    zeroshot_toml, fewshot_toml = out_dir / "zeroshot.toml", out_dir / "fewshot.toml"
    atomic_write_text(zeroshot_toml, zeroshot)
    atomic_write_text(fewshot_toml, fewshot)
    return SynthExperiment(
        h5ad_paths=paths,
        zeroshot_toml=zeroshot_toml,
        fewshot_toml=fewshot_toml,
        spec=spec,
        dataset_name=dataset_name,
        dataset_dir=data_dir,
        zeroshot_test_cell_type=test_ct,
        zeroshot_val_cell_type=val_ct,
        fewshot_cell_type=fewshot_ct,
        fewshot_val_perts=fewshot_val,
        fewshot_test_perts=fewshot_test,
    )
