"""The metric table and the profiles: which metrics exist, what is best, how to compute each.

Metrics are rows of data (`MetricSpec`), looked up by cell-eval's names; nothing is registered at
import time and nothing global is mutated (cell-eval's `metric_configs` mutates its registry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from state_core.errors import ConfigError, Problem
from state_core.eval import anndata_metrics as am
from state_core.eval import de_metrics as dm
from state_core.eval.clustering import clustering_agreement
from state_core.eval.inputs import Groups
from state_core.eval.pseudobulk import Pseudobulk


class Best(Enum):
    ONE = "one"
    ZERO = "zero"
    NONE = "none"


@dataclass(frozen=True)
class MetricValue:
    """One output column: per-perturbation values, and which of them are null (absent, not NaN)."""

    values: np.ndarray  # [P] float64
    null: np.ndarray  # [P] bool


Matrix = np.ndarray | sp.csr_matrix
Cells = tuple[Matrix, Matrix, Groups, Groups]  # real X, pred X, real groups, pred groups


class MetricContext:
    """Everything a metric may need, each piece built on first use and then shared."""

    def __init__(
        self,
        *,
        perts: list[str],
        genes: np.ndarray,
        de: Callable[[], dm.DEComparison],
        pseudobulk: Callable[[], Pseudobulk],
        cells: Callable[[], Cells],
        embed: Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
    ) -> None:
        self.perts = perts
        self.genes = genes
        self._de, self._pseudobulk, self._cells, self._embed = de, pseudobulk, cells, embed

    @cached_property
    def de(self) -> dm.DEComparison:
        return self._de()

    @cached_property
    def pb(self) -> Pseudobulk:
        return self._pseudobulk()

    @cached_property
    def cells(self) -> Cells:
        return self._cells()

    @cached_property
    def embed(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._embed() if self._embed else None


Compute = Callable[[MetricContext], dict[str, MetricValue]]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # "de" | "anndata"
    best: Best
    compute: Compute = field(repr=False)


def _per_pert(fn: Callable[[MetricContext], np.ndarray], name: str, null_without_real_degs: bool = False) -> Compute:
    def compute(ctx: MetricContext) -> dict[str, MetricValue]:
        values = np.asarray(fn(ctx), dtype=np.float64)
        null = np.zeros(values.size, dtype=bool)
        if null_without_real_degs:
            null = ctx.de.sig_real().sum(axis=1) == 0
        return {name: MetricValue(values, null)}

    return compute


def _scalar(fn: Callable[[MetricContext], float], name: str) -> Compute:
    def compute(ctx: MetricContext) -> dict[str, MetricValue]:
        n = len(ctx.perts)
        return {name: MetricValue(np.full(n, float(fn(ctx))), np.zeros(n, dtype=bool))}

    return compute


def _nsig(ctx: MetricContext) -> dict[str, MetricValue]:
    real, pred = dm.nsig_counts(ctx.de)
    none = np.zeros(real.size, dtype=bool)
    return {"de_nsig_counts_real": MetricValue(real, none), "de_nsig_counts_pred": MetricValue(pred, none)}


def _centroids(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    """Float64 per-perturbation means of X (control excluded), as cell-eval's clustering builds them."""
    return ctx.pb.real_mean64, ctx.pb.pred_mean64


def _build_registry() -> dict[str, MetricSpec]:
    specs: list[MetricSpec] = []
    for metric in ("overlap", "precision"):
        for k in (None, 50, 100, 200, 500):
            name = f"{metric}_at_{k or 'N'}"
            specs.append(
                MetricSpec(name, "de", Best.ONE, _per_pert(lambda c, k=k, m=metric: dm.overlap_at_k(c.de, k, m), name))
            )
    specs += [
        MetricSpec("de_spearman_sig", "de", Best.ONE, _scalar(lambda c: dm.de_spearman_sig(c.de), "de_spearman_sig")),
        MetricSpec(
            "de_direction_match",
            "de",
            Best.ONE,
            _per_pert(lambda c: dm.de_direction_match(c.de), "de_direction_match", null_without_real_degs=True),
        ),
        MetricSpec(
            "de_spearman_lfc_sig",
            "de",
            Best.ONE,
            _per_pert(lambda c: dm.de_spearman_lfc_sig(c.de), "de_spearman_lfc_sig", null_without_real_degs=True),
        ),
        MetricSpec(
            "de_sig_genes_recall",
            "de",
            Best.ONE,
            _per_pert(lambda c: dm.de_sig_genes_recall(c.de), "de_sig_genes_recall", null_without_real_degs=True),
        ),
        MetricSpec("de_nsig_counts", "de", Best.NONE, _nsig),
        MetricSpec("pr_auc", "de", Best.ONE, _per_pert(lambda c: dm.de_auc(c.de, "pr"), "pr_auc")),
        MetricSpec("roc_auc", "de", Best.ONE, _per_pert(lambda c: dm.de_auc(c.de, "roc"), "roc_auc")),
        MetricSpec("pearson_delta", "anndata", Best.ONE, _per_pert(lambda c: am.pearson_delta(c.pb), "pearson_delta")),
        MetricSpec("mse", "anndata", Best.ZERO, _per_pert(lambda c: am.mse(c.pb), "mse")),
        MetricSpec("mae", "anndata", Best.ZERO, _per_pert(lambda c: am.mae(c.pb), "mae")),
        MetricSpec("mse_delta", "anndata", Best.ZERO, _per_pert(lambda c: am.mse_delta(c.pb), "mse_delta")),
        MetricSpec("mae_delta", "anndata", Best.ZERO, _per_pert(lambda c: am.mae_delta(c.pb), "mae_delta")),
    ]
    for dist in ("l1", "l2", "cosine"):
        name = f"discrimination_score_{dist}"
        specs.append(
            MetricSpec(
                name,
                "anndata",
                Best.ONE,
                _per_pert(lambda c, d=dist: am.discrimination_score(c.pb, c.genes, d, c.embed), name),
            )
        )
    specs += [
        MetricSpec(
            "pearson_edistance",
            "anndata",
            Best.ONE,
            _scalar(lambda c: am.pearson_edistance(*c.cells), "pearson_edistance"),
        ),
        MetricSpec(
            "clustering_agreement",
            "anndata",
            Best.ONE,
            _scalar(lambda c: clustering_agreement(*_centroids(c)), "clustering_agreement"),
        ),
    ]
    return {s.name: s for s in specs}


REGISTRY: dict[str, MetricSpec] = _build_registry()

MINIMAL = (
    "pearson_delta",
    "mse",
    "mae",
    "discrimination_score_l1",
    "overlap_at_N",
    "precision_at_N",
    "de_nsig_counts",
)
VCC = ("mae", "discrimination_score_l1", "overlap_at_N")


def profile_metrics(profile: str) -> list[str]:
    """Registry names of a cell-eval profile, in its order."""
    de_names = [n for n, s in REGISTRY.items() if s.kind == "de"]
    anndata_names = [n for n, s in REGISTRY.items() if s.kind == "anndata"]
    profiles = {
        "full": de_names + anndata_names,
        "de": de_names,
        "anndata": anndata_names,
        "minimal": list(MINIMAL),
        "vcc": list(VCC),
        "pds": ["discrimination_score_l1"],
    }
    if profile not in profiles:
        raise ConfigError(
            "profile", Problem("profile", f"unknown profile {profile!r}", f"use one of {sorted(profiles)}")
        )
    return profiles[profile]


def select_metrics(profile: str, skip: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The metrics to compute, DE metrics first (cell-eval computes and writes them first)."""
    unknown = [s for s in skip if s not in REGISTRY]
    if unknown:
        raise ConfigError(
            "skip_metrics",
            Problem("skip_metrics", f"unknown metric names {unknown}", f"use names from {list(REGISTRY)}"),
        )
    names = [n for n in profile_metrics(profile) if n not in set(skip)]
    return [n for n in names if REGISTRY[n].kind == "de"] + [n for n in names if REGISTRY[n].kind == "anndata"]


def needs_de(profile: str, names: list[str]) -> bool:
    """cell-eval computes DE for every profile except pds, even when no DE metric is selected."""
    return profile != "pds" or any(REGISTRY[n].kind == "de" for n in names)


def best_value(column: str) -> Best | None:
    """Best value of an output column; None for columns outside the registry (de_nsig_counts_*)."""
    spec = REGISTRY.get(column)
    return spec.best if spec else None
