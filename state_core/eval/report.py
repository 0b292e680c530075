"""The one HTML report: one model or several (candidate, baseline, serving), one or many cell types.

A page is self-contained (inline CSS and SVG, no scripts or external assets), so it renders offline, in the
Kubeflow UI's HTML viewer too. Sections: the gate's rule and outcome (when given); per scope (all cell types,
then each cell type) a metric table with every model's value and the first model's delta to each other
model; per-perturbation bar charts sorted by the first model with the other models drawn as markers;
predicted-vs-real delta scatter plots; undefined metrics shown as "n/a" with the reason.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from state_core.atomic import atomic_write_text
from state_core.eval.evaluation import EvalResult
from state_core.eval.registry import Best, best_value
from state_core.eval.result_files import read_de_tables, read_result
from state_core.eval.summary import ALL_CELLS, SINGLE, MetricSummary, summarize

# Metrics shown first in the tables when present, in this order; the rest follow alphabetically.
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
BAR_METRICS = ("pearson_delta", "overlap_at_N", "discrimination_score_l1", "mse")
N_SCATTER = 6
MARKER_COLOURS = ("#c0392b", "#7f8c8d", "#8e44ad")  # 2nd, 3rd, 4th model
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;color:#1d2330;
background:#fff;padding:0 16px}h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;
border-bottom:2px solid #e3e7ee;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#5b6575;margin:0 0 16px}.gate{border-radius:8px;padding:12px 16px;margin:14px 0;border:1px solid}
.gate.promote{background:#e8f6ee;border-color:#27ae60}.gate.hold{background:#fdf1e6;border-color:#e67e22}
.gate b.verdict{font-size:18px}table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e3e7ee;padding:4px 10px;text-align:right}th{background:#f4f6fa}
td:first-child,th:first-child{text-align:left}tr.gatemetric td{background:#fff8dc;font-weight:600}
.better{color:#1e8449}.worse{color:#c0392b}.na{color:#8a94a6;font-style:italic}
ul.reasons{font-size:12px;color:#5b6575;margin:4px 0 10px}.legend{font-size:12px;color:#5b6575}
.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
svg text{font-family:inherit}details{margin:10px 0}summary{cursor:pointer;color:#2c5aa0}
.charts{display:flex;flex-wrap:wrap;gap:18px}
"""


@dataclass(frozen=True)
class ReportModel:
    """One evaluated model as the report shows it."""

    label: str  # e.g. "candidate", "baseline", "serving v1"
    result: EvalResult
    summary: MetricSummary
    de: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)  # cell type -> (real, pred)

    @classmethod
    def from_folder(cls, label: str, folder: str | Path) -> ReportModel:
        result = read_result(folder)
        return cls(label, result, summarize(result), read_de_tables(folder))


@dataclass(frozen=True)
class GateView:
    """The promotion gate as the report shows it."""

    metric: str
    rule: str
    promote: bool
    reason: str


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "n/a"


def _order(metrics: list[str]) -> list[str]:
    return [m for m in HEADLINE if m in metrics] + sorted(m for m in metrics if m not in HEADLINE)


def _delta_cell(metric: str, a: float, b: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)):
        return "<td class='na'>n/a</td>"
    delta = a - b
    best = best_value(metric)
    good = (delta > 0) if best is Best.ONE else (delta < 0) if best is Best.ZERO else None
    cls = "" if good is None or delta == 0 else " class='better'" if good else " class='worse'"
    return f"<td{cls}>{delta:+.4g}</td>"


def _scope_values(model: ReportModel, scope: str) -> dict[str, float]:
    return model.summary.means if scope == ALL_CELLS else model.summary.by_cell_type.get(scope, {})


def _metric_table(models: Sequence[ReportModel], scope: str, gate_metric: str | None) -> str:
    """Headline metrics (and the gate's) in view; the others folded below, in the same layout."""
    metrics = _order(sorted({m for model in models for m in _scope_values(model, scope)}))
    shown = [m for m in metrics if m in HEADLINE or m == gate_metric]
    table, notes = _rows_table(models, scope, gate_metric, shown)
    rest = [m for m in metrics if m not in shown]
    if rest:
        more, more_notes = _rows_table(models, scope, gate_metric, rest)
        table += f"<details><summary>{len(rest)} more metrics</summary>{more}</details>"
        notes += more_notes
    return table + (f"<ul class='reasons'>{''.join(notes)}</ul>" if notes else "")


def _rows_table(
    models: Sequence[ReportModel], scope: str, gate_metric: str | None, metrics: list[str]
) -> tuple[str, list[str]]:
    head = "".join(f"<th>{html.escape(m.label)}</th>" for m in models)
    head += "".join(f"<th>Δ vs {html.escape(m.label)}</th>" for m in models[1:])
    rows, reasons = [], []
    for metric in metrics:
        values = [_scope_values(m, scope).get(metric, math.nan) for m in models]
        cells = "".join(f"<td>{_fmt(v)}</td>" if math.isfinite(v) else "<td class='na'>n/a</td>" for v in values)
        cells += "".join(_delta_cell(metric, values[0], v) for v in values[1:])
        cls = " class='gatemetric'" if metric == gate_metric else ""
        rows.append(f"<tr{cls}><td>{html.escape(metric)}</td>{cells}</tr>")
        for model, value in zip(models, values, strict=True):
            if not math.isfinite(value) and metric in model.summary.reasons:
                reasons.append(
                    f"<li><b>{html.escape(metric)}</b> of {html.escape(model.label)}: "
                    f"{html.escape(_scoped_reason(model.summary.reasons[metric], scope))}</li>"
                )
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>", reasons


def _scoped_reason(text: str, scope: str) -> str:
    if scope in (ALL_CELLS, SINGLE):
        return text
    parts = [p for p in text.split("; ") if f" in {scope}:" in p]
    return "; ".join(parts) or text


def _per_pert(model: ReportModel, scope: str, metric: str) -> pd.Series:
    frame = model.result.results
    if "celltype" in frame.columns:
        frame = frame[frame["celltype"].astype(str) == scope]
    if metric not in frame.columns:
        return pd.Series(dtype=float)
    return pd.Series(frame[metric].to_numpy(float), index=frame["perturbation"].astype(str))


def bar_chart_svg(metric: str, main: pd.Series, others: Sequence[tuple[str, pd.Series]], main_label: str) -> str:
    """Horizontal bars of `main` per perturbation, best first, with each of `others` as a marker."""
    best = best_value(metric)
    ordered = main.sort_values(ascending=best is Best.ZERO, na_position="last")
    values = [v for s in (main, *(o for _, o in others)) for v in s.to_numpy(float) if math.isfinite(v)]
    lo, hi = min([0.0, *values]), max([0.0, *values])
    span = (hi - lo) or 1.0
    label_w, bar_w, value_w, row_h = 130, 300, 60, 18
    width, height = label_w + bar_w + value_w, row_h * len(ordered) + 30
    x = lambda v: label_w + (v - lo) / span * bar_w  # noqa: E731
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{html.escape(metric)} per perturbation'>",
        f"<line x1='{x(0):.1f}' y1='4' x2='{x(0):.1f}' y2='{height - 22}' stroke='#9aa4b5'/>",
    ]
    for i, (pert, value) in enumerate(ordered.items()):
        y = 6 + i * row_h
        parts.append(
            f"<text x='{label_w - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{html.escape(pert)}</text>"
        )
        if math.isfinite(value):
            x0, x1 = sorted((x(0), x(value)))
            parts.append(
                f"<rect x='{x0:.1f}' y='{y + 2}' width='{max(x1 - x0, 1):.1f}' height='{row_h - 6}' "
                f"fill='#4a78c2'><title>{html.escape(main_label)} {value:.4g}</title></rect>"
            )
        for (label, series), colour in zip(others, MARKER_COLOURS, strict=False):
            ref = float(series.get(pert, math.nan))
            if math.isfinite(ref):
                parts.append(
                    f"<rect x='{x(ref) - 1.5:.1f}' y='{y}' width='3' height='{row_h - 2}' fill='{colour}'>"
                    f"<title>{html.escape(label)} {ref:.4g}</title></rect>"
                )
        parts.append(f"<text x='{label_w + bar_w + 6}' y='{y + 12}' font-size='11'>{_fmt(value)}</text>")
    axis_y = height - 8
    parts.append(f"<text x='{label_w}' y='{axis_y}' font-size='10' fill='#5b6575'>{lo:.3g}</text>")
    parts.append(
        f"<text x='{label_w + bar_w}' y='{axis_y}' font-size='10' fill='#5b6575' "
        f"text-anchor='end'>{hi:.3g}</text></svg>"
    )
    return "".join(parts)


def _legend(models: Sequence[ReportModel]) -> str:
    items = [f"<span class='swatch' style='background:#4a78c2'></span>{html.escape(models[0].label)} (bars)"]
    items += [
        f"<span class='swatch' style='background:{c}'></span>{html.escape(m.label)} (marker)"
        for m, c in zip(models[1:], MARKER_COLOURS, strict=False)
    ]
    return f"<div class='legend'>{''.join(items)}</div>"


def _charts(models: Sequence[ReportModel], scope: str, gate_metric: str | None) -> str:
    wanted = list(dict.fromkeys([m for m in (gate_metric, *BAR_METRICS) if m]))
    blocks = []
    for metric in wanted:
        main = _per_pert(models[0], scope, metric)
        if main.empty or not np.isfinite(main.to_numpy(float)).any():
            continue
        others = [(m.label, _per_pert(m, scope, metric)) for m in models[1:]]
        direction = {Best.ONE: "higher is better", Best.ZERO: "lower is better"}.get(best_value(metric), "")
        blocks.append(
            f"<div><h3>{html.escape(metric)} per perturbation <small>({direction})</small></h3>"
            f"{bar_chart_svg(metric, main, others, models[0].label)}</div>"
        )
    return (_legend(models) + f"<div class='charts'>{''.join(blocks)}</div>") if blocks else ""


def _delta(de: pd.DataFrame, suffix: str) -> np.ndarray:
    """Pseudobulk delta in log1p space, mean(pert) - mean(control), recovered from the DE table's
    count-space means (target_mean = expm1(mean log1p))."""
    return np.log1p(de[f"target_mean{suffix}"].to_numpy(float)) - np.log1p(de[f"ref_mean{suffix}"].to_numpy(float))


def delta_scatter_svg(real_de: pd.DataFrame, pred_de: pd.DataFrame, perts: list[str]) -> str:
    """Predicted vs real delta per gene for `perts`, as inline SVG (matplotlib, text kept as text)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(perts))
    rows = int(np.ceil(len(perts) / cols))
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "state-report"}):
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
        merged = real_de.merge(pred_de, on=["target", "feature"], suffixes=("_real", "_pred"))
        for ax, pert in zip(axes.ravel(), perts, strict=False):
            sub = merged[merged["target"].astype(str) == pert]
            x, y = _delta(sub, "_real"), _delta(sub, "_pred")
            ok = np.isfinite(x) & np.isfinite(y)
            sig = (sub["fdr_real"].to_numpy(float) < 0.05) & ok
            ax.scatter(x[ok & ~sig], y[ok & ~sig], s=3, color="#bbbbbb")
            ax.scatter(x[sig], y[sig], s=6, color="#c00000")
            if ok.any():
                lo, hi = min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())
                ax.plot([lo, hi], [lo, hi], lw=0.8, color="black")
            ax.set_title(pert, fontsize=9)
            ax.set_xlabel("real delta", fontsize=8)
            ax.set_ylabel("predicted delta", fontsize=8)
        for ax in axes.ravel()[len(perts) :]:
            ax.axis("off")
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
        plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG is inlined in HTML


def _scatter_perts(results: pd.DataFrame) -> list[str]:
    """The perturbations with most real DEGs (else the first ones): their deltas say most."""
    ranked = (
        results.sort_values("de_nsig_counts_real", ascending=False, kind="stable")
        if "de_nsig_counts_real" in results.columns
        else results
    )
    return ranked["perturbation"].astype(str).head(N_SCATTER).tolist()


def _scatter(model: ReportModel, scope: str) -> str:
    tables = model.de.get(scope)
    if tables is None or not all("target_mean" in t.columns for t in tables):
        return ""
    results = model.result.results
    if "celltype" in results.columns:
        results = results[results["celltype"].astype(str) == scope]
    svg = delta_scatter_svg(tables[0], tables[1], _scatter_perts(results))
    return (
        f"<h3>Predicted vs real change from control, {html.escape(model.label)} (mean log1p expression; "
        f"perturbations with most real DE genes; red = real DE gene)</h3>{svg}"
    )


def _gate_box(gate: GateView) -> str:
    verdict = "PROMOTE" if gate.promote else "HOLD (nothing published)"
    return (
        f"<div class='gate {'promote' if gate.promote else 'hold'}'><b class='verdict'>Gate: {verdict}</b>"
        f"<div>Rule: {html.escape(gate.rule)}</div><div>{html.escape(gate.reason)}</div></div>"
    )


def _scopes(models: Sequence[ReportModel]) -> list[str]:
    cell_types = list(models[0].summary.by_cell_type)
    return cell_types if len(cell_types) == 1 else [ALL_CELLS, *cell_types]


def render_html(
    models: Sequence[ReportModel],
    *,
    title: str = "Evaluation report",
    gate: GateView | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The report page for `models` (the first is the one judged; the others are its references)."""
    gate_metric = gate.metric if gate else None
    n_perts = sum(models[0].summary.n_perturbations.values())
    sub = f"{len(models[0].summary.by_cell_type)} cell type(s), {n_perts} perturbations; models: " + ", ".join(
        html.escape(m.label) for m in models
    )
    body = [f"<h1>{html.escape(title)}</h1><p class='sub'>{sub}</p>"]
    if gate:
        body.append(_gate_box(gate))
    body += [f"<p class='sub'>{html.escape(n)}</p>" for n in notes]
    for scope in _scopes(models):
        body.append(f"<h2>{html.escape(scope if scope != SINGLE else 'All cells')}</h2>")
        body.append(_metric_table(models, scope, gate_metric))
        if scope != ALL_CELLS:
            body.append(_charts(models, scope, gate_metric))
            body.append(_scatter(models[0], scope))
    table = models[0].result.results.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0)
    body.append(
        f"<details><summary>Per-perturbation results of {html.escape(models[0].label)}</summary>{table}</details>"
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def markdown_summary(model: ReportModel) -> str:
    lines = ["# Evaluation summary", "", f"{sum(model.summary.n_perturbations.values())} perturbations evaluated.", ""]
    scopes = _scopes([model])
    lines += ["| metric | " + " | ".join(scopes) + " |", "|---|" + "---|" * len(scopes)]
    for metric in _order(list(model.summary.means)):
        lines.append(
            f"| {metric} | " + " | ".join(_fmt(_scope_values(model, s).get(metric, math.nan)) for s in scopes) + " |"
        )
    lines += ["", *(f"- {m}: n/a, {r}" for m, r in sorted(model.summary.reasons.items()))]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    result_dir: str | Path, out_html: str | Path | None = None, out_md: str | Path | None = None, label: str = "model"
) -> dict[str, Path]:
    """Render report.html and report.md from an evaluation outdir (one or many cell types)."""
    folder = Path(result_dir)
    model = ReportModel.from_folder(label, folder)
    html_path = Path(out_html) if out_html is not None else folder / "report.html"
    md_path = Path(out_md) if out_md is not None else folder / "report.md"
    atomic_write_text(html_path, render_html([model]))
    atomic_write_text(md_path, markdown_summary(model))
    return {"html": html_path, "md": md_path}
