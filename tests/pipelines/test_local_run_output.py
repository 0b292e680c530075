"""What `state pipeline run --local` prints when a stage fails: the failing stage and its error, in a few
lines (the full log in the output folder), or kfp.local's full log with `--verbose`.

The short output of a successful run is checked in test_local_run.py (it needs the whole pipeline).
"""

from __future__ import annotations

import contextlib
import io

import pytest

from pipelines.local_run import LocalRunOptions, run_local
from state_core.errors import ArtifactError

pytestmark = pytest.mark.slow
BAD = ["control_pert=NO_SUCH_CONTROL"]  # the split stage refuses it, a few seconds into the run


def test_failed_stage_shows_its_error_in_a_few_lines(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(ArtifactError) as err:
        run_local(LocalRunOptions(out_dir=str(tmp_path), params=BAD, query=False, cache=False))
    lines = printed.getvalue().splitlines()
    assert len(lines) <= 5 and ["split", "FAILED"] in [line.split()[:2] for line in lines], lines
    assert lines[-1].startswith("  not run, an earlier stage failed: ") and "train candidate" in lines[-1], lines
    message = str(err.value)
    assert "stage split-cells failed" in message and "NO_SUCH_CONTROL" in message
    assert str(tmp_path / "pipeline.log") in message
    assert "Streamed logs" in (tmp_path / "pipeline.log").read_text()  # kfp.local's full output kept


def test_verbose_prints_the_full_kfp_log(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(RuntimeError):
        run_local(LocalRunOptions(out_dir=str(tmp_path), params=BAD, query=False, cache=False, verbose=True))
    text = printed.getvalue()
    assert "Streamed logs" in text and "NO_SUCH_CONTROL" in text and len(text.splitlines()) > 40
