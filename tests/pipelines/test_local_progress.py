"""The stage lines of a local run, from the records kfp.local logs (no pipeline run needed)."""

from __future__ import annotations

import io

from pipelines.local_progress import StageEvents

TRACEBACK = [
    "    Traceback (most recent call last):",
    '      File "x.py", line 1, in f',
    "        f()",
    "    state_core.errors.ConfigError: run.toml: 1 problem",
    "      - key: bad value",
    "    12:00:00.000 - ERROR - Task 'split-cells' finished with status FAILURE",
]


def _events() -> tuple[StageEvents, io.StringIO]:
    echo = io.StringIO()
    return StageEvents(
        key_figure=lambda task: f"figure of {task}",
        echo=echo,
        display_names={"split-cells": "split", "train-model": "train candidate"},
    ), echo


def test_each_finished_cached_or_skipped_stage_prints_one_line():
    events, echo = _events()
    events.on_message("Executing task \x1b[96m'split-cells'\x1b[0m")
    events.on_message("Task \x1b[96m'split-cells'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m")
    events.on_message("Task train-model cache hit (key=abc); skipping execution.")
    events.on_message("Skipping conditional task export-onnx: condition evaluated to false")
    lines = [line.split() for line in echo.getvalue().splitlines()]
    assert lines[0][:2] == ["split", "ok"] and lines[0][-3:] == ["figure", "of", "split-cells"]
    assert lines[1][:3] == ["train", "candidate", "cached"]
    assert lines[2][:2] == ["export-onnx", "skipped"] and "condition" in lines[2]


def test_a_failed_stage_keeps_its_exception_lines():
    events, echo = _events()
    events.on_message("Executing task 'split-cells'")
    for line in ["    some progress", *TRACEBACK]:
        events.on_output(line + "\n")
    events.on_message("Task 'split-cells' finished with status FAILURE")
    events.on_output("Skipping task embed-cells: upstream task(s) ['split-cells'] failed.\n")  # not the stage's
    assert events.failed == "split-cells" and echo.getvalue().split()[:2] == ["split", "FAILED"]
    assert events.failure_tail().splitlines() == [
        "    | state_core.errors.ConfigError: run.toml: 1 problem",
        "    |   - key: bad value",
    ]
