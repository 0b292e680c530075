"""The evaluate stage: predict a run's test split, score it like cell-eval, reduce to one number per metric.

Also the round trip of those numbers through a KFP `Metrics` artifact, whose metadata must be JSON a
Kubeflow backend accepts: NaN (cell-eval's value for undefined metrics) is not, so undefined metrics are
listed by name under `UNDEFINED_KEY` and come back as NaN for the promotion gate.
"""

from __future__ import annotations

import csv
import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from state_core.errors import ArtifactError

UNDEFINED_KEY = "undefined_metrics"
AGG_FILE = (
    "agg_results.csv"  # one per test cell type: <out>/<cell type>/agg_results.csv
)


@dataclass(frozen=True)
class EvaluationSummary:
    metrics: dict[str, float]  # metric -> mean over perturbations (and over cell types)
    report_html: Path
    folder: Path


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_agg_means(path: Path) -> dict[str, float]:
    """The `mean` row of a cell-eval `agg_results.csv` (first column `statistic`)."""
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("statistic") == "mean":
                return {k: _float(v) for k, v in row.items() if k != "statistic"}
    raise ArtifactError(
        f"{path}: no 'mean' row in the statistic column; rerun the evaluation"
    )


def mean_over_files(paths: list[Path]) -> dict[str, float]:
    """Average each metric over the per-cell-type result files (a NaN in any file stays NaN)."""
    tables = [read_agg_means(p) for p in paths]
    names = sorted(set().union(*tables)) if tables else []
    return {n: sum(t.get(n, math.nan) for t in tables) / len(tables) for n in names}


def combine_reports(reports: list[Path], out_path: Path) -> Path:
    """One HTML page holding every cell type's report (a KFP HTML artifact is a single file)."""
    sections = []
    for report in reports:
        text = report.read_text(encoding="utf-8")
        body = re.search(
            r"<body[^>]*>(.*)</body>", text, flags=re.DOTALL | re.IGNORECASE
        )
        title = html.escape(report.parent.name)
        sections.append(
            f"<section><h1>Cell type: {title}</h1>\n{body.group(1) if body else text}</section>"
        )
    out_path.write_text(
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>State evaluation</title></head>'
        "<body>\n" + "\n<hr>\n".join(sections) + "\n</body></html>\n",
        encoding="utf-8",
    )
    return out_path


def evaluate_run(run_dir: str | Path, out_dir: str | Path) -> EvaluationSummary:
    """Predict and evaluate the test split of `run_dir` into `out_dir` (one sub-folder per test cell type)."""
    from state_core.train.predict import predict_test_split

    folder = predict_test_split(run_dir, evaluate=True, out_dir=out_dir)
    agg_files = sorted(folder.rglob(AGG_FILE))
    if not agg_files:
        raise ArtifactError(
            f"{folder}: evaluation wrote no {AGG_FILE}; does the test split hold perturbed cells?"
        )
    reports = sorted(folder.rglob("report.html"))
    if not reports:
        raise ArtifactError(f"{folder}: the evaluation wrote no report.html")
    report = combine_reports(reports, folder / "evaluation_report.html")
    return EvaluationSummary(
        metrics=mean_over_files(agg_files), report_html=report, folder=folder
    )


def metrics_to_metadata(metrics: Mapping[str, float]) -> dict[str, float | str]:
    """Finite metrics as numbers, the names of undefined ones in one comma-separated entry."""
    metadata: dict[str, float | str] = {
        k: float(v) for k, v in metrics.items() if math.isfinite(v)
    }
    undefined = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if undefined:
        metadata[UNDEFINED_KEY] = ",".join(undefined)
    return metadata


def metrics_from_metadata(metadata: Mapping[str, object]) -> dict[str, float]:
    """Inverse of `metrics_to_metadata`; other metadata entries (e.g. display names) are ignored."""
    metrics = {
        k: float(v)
        for k, v in metadata.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for name in str(metadata.get(UNDEFINED_KEY, "")).split(","):
        if name:
            metrics[name] = math.nan
    return metrics
