"""A self-contained HTML report (figures embedded as base64 PNG) and a Markdown summary of a run.

Reads only the files `evaluate` writes (results.csv, agg_results.csv, optionally real/pred_de.csv),
so a KFP component can render it from an artifact folder.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from state_core.atomic import atomic_write_text
from state_core.errors import ArtifactError

# Metrics shown in the headline table when present, in this order.
HEADLINE = (
    "overlap_at_N",
    "precision_at_N",
    "de_direction_match",
    "de_sig_genes_recall",
    "pr_auc",
    "roc_auc",
    "pearson_delta",
    "mse",
    "mae",
    "discrimination_score_l1",
    "pearson_edistance",
    "clustering_agreement",
)
N_SCATTER = 6


def _read(result_dir: Path, name: str, required: bool) -> pd.DataFrame | None:
    path = result_dir / name
    if not path.is_file():
        if required:
            raise ArtifactError(f"{path} not found\n    fix: point at the outdir of `state eval run`")
        return None
    return pd.read_csv(path)


def _figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bar_figure(results: pd.DataFrame, metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = results.sort_values(metric)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.22 * len(values) + 2), 3.0))
    ax.bar(values["perturbation"].astype(str), values[metric], color="#4472c4")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per perturbation")
    ax.tick_params(axis="x", rotation=90, labelsize=6 if len(values) > 40 else 8)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _delta(de: pd.DataFrame, suffix: str) -> np.ndarray:
    """Pseudobulk delta in log1p space, mean(pert) - mean(control), recovered from the DE table's
    count-space means (target_mean = expm1(mean log1p))."""
    return np.log1p(de[f"target_mean{suffix}"].to_numpy(float)) - np.log1p(de[f"ref_mean{suffix}"].to_numpy(float))


def _delta_scatter(real_de: pd.DataFrame, pred_de: pd.DataFrame, perts: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(perts))
    rows = int(np.ceil(len(perts) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    merged = real_de.merge(pred_de, on=["target", "feature"], suffixes=("_real", "_pred"))
    for ax, pert in zip(axes.ravel(), perts, strict=False):
        sub = merged[merged["target"].astype(str) == pert]
        x, y = _delta(sub, "_real"), _delta(sub, "_pred")
        ok = np.isfinite(x) & np.isfinite(y)
        sig = (sub["fdr_real"].to_numpy(float) < 0.05) & ok
        ax.scatter(x[ok & ~sig], y[ok & ~sig], s=3, color="#bbbbbb", label="other")
        ax.scatter(x[sig], y[sig], s=6, color="#c00000", label="real DEG")
        if ok.any():
            lo, hi = np.min([x[ok].min(), y[ok].min()]), np.max([x[ok].max(), y[ok].max()])
            ax.plot([lo, hi], [lo, hi], lw=0.8, color="black")
        ax.set_title(pert, fontsize=9)
        ax.set_xlabel("real delta", fontsize=8)
        ax.set_ylabel("predicted delta", fontsize=8)
    for ax in axes.ravel()[len(perts) :]:
        ax.axis("off")
    fig.tight_layout()
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _mean_row(agg: pd.DataFrame) -> pd.Series:
    return agg[agg["statistic"].astype(str) == "mean"].iloc[0].drop("statistic")


def _summary_rows(agg: pd.DataFrame) -> list[tuple[str, float, float]]:
    mean = _mean_row(agg)
    std = agg[agg["statistic"].astype(str) == "std"].iloc[0].drop("statistic")
    order = [m for m in HEADLINE if m in mean.index] + [m for m in mean.index if m not in HEADLINE]
    return [(m, float(mean[m]), float(std[m])) for m in order]


def markdown_summary(results: pd.DataFrame, agg: pd.DataFrame) -> str:
    lines = [
        "# Evaluation summary",
        "",
        f"{len(results)} perturbations evaluated.",
        "",
        "| metric | mean | std |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {mu:.4g} | {sd:.3g} |" for m, mu, sd in _summary_rows(agg)]
    return "\n".join(lines) + "\n"


def _html_table(agg: pd.DataFrame) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{mu:.4g}</td><td>{sd:.3g}</td></tr>" for m, mu, sd in _summary_rows(agg)
    )
    return f"<table><tr><th>metric</th><th>mean</th><th>std</th></tr>{rows}</table>"


def _scatter_perts(results: pd.DataFrame) -> list[str]:
    """The perturbations with most real DEGs (else the first ones): their deltas say most."""
    if "de_nsig_counts_real" in results.columns:
        ranked = results.sort_values("de_nsig_counts_real", ascending=False, kind="stable")
    else:
        ranked = results
    return ranked["perturbation"].astype(str).head(N_SCATTER).tolist()


def render_html(results: pd.DataFrame, agg: pd.DataFrame, real_de: pd.DataFrame | None, pred_de: pd.DataFrame | None) -> str:
    sections = [f"<h2>Summary ({len(results)} perturbations)</h2>", _html_table(agg)]
    for metric in ("pearson_delta", "overlap_at_N", "discrimination_score_l1"):
        if metric in results.columns and results[metric].notna().any():
            sections.append(f"<h2>{metric}</h2><img src='data:image/png;base64,{_bar_figure(results, metric)}'/>")
    if real_de is not None and pred_de is not None and "target_mean" in real_de and "target_mean" in pred_de:
        png = _delta_scatter(real_de, pred_de, _scatter_perts(results))
        sections.append(
            "<h2>Predicted vs real delta, mean log1p expression of perturbation minus control "
            "(perturbations with most real DEGs; red = real DEG)</h2>"
            f"<img src='data:image/png;base64,{png}'/>"
        )
    sections.append("<h2>Per-perturbation results</h2>" + results.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}h2{margin-top:1.5em}"
    )
    body = "\n".join(sections)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>{style}</style></head><body><h1>Evaluation report</h1>{body}</body></html>"


def write_report(result_dir: str | Path, out_html: str | Path | None = None, out_md: str | Path | None = None) -> dict[str, Path]:
    """Render report.html and report.md from an evaluation outdir; returns the paths written."""
    folder = Path(result_dir)
    results = _read(folder, "results.csv", required=True)
    agg = _read(folder, "agg_results.csv", required=True)
    real_de, pred_de = _read(folder, "real_de.csv", False), _read(folder, "pred_de.csv", False)
    html_path = Path(out_html) if out_html is not None else folder / "report.html"
    md_path = Path(out_md) if out_md is not None else folder / "report.md"
    written = {}
    for path, text in ((html_path, render_html(results, agg, real_de, pred_de)), (md_path, markdown_summary(results, agg))):
        atomic_write_text(path, text)
        written[path.suffix.lstrip(".")] = path
    return written
