"""The comparison page renders in headless Chromium (Debian's `chromium`) with its numbers in the DOM."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import anndata as ad
import pytest

from state_core.eval import build_baseline, evaluate
from state_core.eval.report import GateView, ReportModel, render_html

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-extensions",
    "--disable-dev-shm-usage",
]


class _Text(HTMLParser):
    """Text of every table cell, and the tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.tags: set[str] = set()
        self._in_cell = False

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.add(tag)
        if tag in ("td", "th"):
            self._in_cell, self.cells = True, [*self.cells, ""]

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):  # noqa: ANN001
        if self._in_cell:
            self.cells[-1] += data


@pytest.fixture(scope="module")
def page(tiny_pair, tiny_spec, tmp_path_factory) -> tuple[Path, ReportModel, ReportModel]:
    real, pred = (a.copy() for a in tiny_pair)
    for a in (real, pred):
        a.obs["cell_type"] = ["K562" if i % 2 else "RPE1" for i in range(a.n_obs)]
    out = tmp_path_factory.mktemp("report")
    kw = dict(
        pert_col=tiny_spec.pert_col,
        control_pert=tiny_spec.control_pert,
        celltype_col="cell_type",
        profile="full",
        celltype_folders=True,
    )
    parts = []
    for cell_type in ("K562", "RPE1"):  # the mean baseline of each cell type (undefined pearson_edistance)
        part = build_baseline(
            real[real.obs["cell_type"] == cell_type].copy(),
            pert_col=tiny_spec.pert_col,
            control_pert=tiny_spec.control_pert,
            output_path=out / f"{cell_type}.h5ad",
            output_de_path=None,
        )
        parts.append(part)
        part.obs["cell_type"] = cell_type
    base = ad.concat(parts, index_unique="-")
    evaluate(pred, real, outdir=out / "candidate", **kw)
    evaluate(base, real, outdir=out / "baseline", **kw)
    candidate, baseline = (
        ReportModel.from_folder("candidate", out / "candidate"),
        ReportModel.from_folder("baseline", out / "baseline"),
    )
    gate = GateView("mse", "publish when mse (lower is better) beats the baseline", True, "The candidate wins.")
    path = out / "report.html"
    path.write_text(render_html([candidate, baseline], title="Candidate vs baseline", gate=gate))
    return path, candidate, baseline


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_chromium_with_its_numbers(page, tmp_path):
    path, candidate, baseline = page
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    parsed = _Text()
    parsed.feed(dom)
    assert {"table", "svg", "rect"} <= parsed.tags  # tables and the inline charts made it into the DOM
    cells = [c.strip() for c in parsed.cells]
    for model in (candidate, baseline):
        assert f"{model.summary.means['mse']:.4g}" in cells
        assert f"{model.summary.by_cell_type['K562']['overlap_at_N']:.4g}" in cells
    delta = candidate.summary.means["mse"] - baseline.summary.means["mse"]
    assert f"{delta:+.4g}" in cells
    assert "Gate: PROMOTE" in dom and "n/a" in cells  # the baseline's undefined metrics are shown as n/a
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, "--window-size=1280,1800", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
