"""What a local pipeline run prints: one line per stage, the full kfp.local log in a file.

kfp.local prints every task's streamed output and executor JSON to stdout (hundreds of lines). Here stdout
is sent to `<out>/pipeline.log`, and the records kfp.local logs about each task (executing, finished with a
status, cache hit, skipped) become one line each: name, status, duration, a key figure from the task's
executor output. A failed stage's last log lines are kept, so its error can still be shown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours task names and statuses
TASK = r"'?([A-Za-z0-9_.-]+)'?"
EVENTS = (
    ("start", re.compile(rf"^Executing task {TASK}")),
    ("finish", re.compile(rf"^Task {TASK} finished with status (\w+)")),
    ("cached", re.compile(rf"^Task {TASK} cache hit")),
    ("upstream failed", re.compile(rf"^Skipping task {TASK}: upstream")),
    ("skipped", re.compile(rf"^Skipping conditional task {TASK}")),
)
KFP_INDENT = "    "  # kfp.local indents a task's streamed output
ERROR_LINES = 25  # of a failed stage's output shown on the terminal
KEPT_LINES = 400  # of each stage's output kept to find its error in


@dataclass
class StageEvents:
    """The stages seen so far and the output lines of the running ones."""

    key_figure: Callable[[str], str]
    echo: TextIO
    started: dict[str, float] = field(default_factory=dict)
    tails: dict[str, deque[str]] = field(default_factory=dict)
    current: dict[int, str] = field(default_factory=dict)  # thread -> task whose output it streams
    failed: str | None = None
    lines: list[str] = field(default_factory=list)
    display_names: dict[str, str] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)  # stages skipped because an earlier one failed

    def on_message(self, text: str) -> None:
        text = ANSI.sub("", text).strip()
        for kind, pattern in EVENTS:
            match = pattern.match(text)
            if match:
                self._event(kind, match.group(1), match.groups()[1:])
                return

    def _event(self, kind: str, task: str, rest: tuple[str, ...]) -> None:
        if kind == "start":
            self.started[task] = time.monotonic()
            self.tails[task] = deque(maxlen=KEPT_LINES)
            self.current[threading.get_ident()] = task
            return
        duration = time.monotonic() - self.started.get(task, time.monotonic())
        self.current = {thread: name for thread, name in self.current.items() if name != task}
        if kind == "finish":
            status = "ok" if rest[0] == "SUCCESS" else "FAILED"
            if status == "FAILED":
                self.failed = task
            figure = self.key_figure(task) if status == "ok" else ""
            self._line(task, status, f"{duration:5.1f}s", figure)
        elif kind == "cached":
            self._line(task, "cached", "    -", self.key_figure(task))
        elif kind == "upstream failed":
            self.not_run.append(self.display_names.get(task, task))  # one summary line, not one per stage
        else:
            self._line(task, "skipped", "    -", "its condition is false (the gate held the candidate)")

    def _line(self, task: str, status: str, duration: str, figure: str) -> None:
        name = self.display_names.get(task, task)
        line = f"  {name:<33} {status:<7} {duration:>7}  {figure}".rstrip()
        self.lines.append(line)
        print(line, file=self.echo, flush=True)

    def report_not_run(self) -> None:
        if self.not_run:
            line = f"  not run, an earlier stage failed: {', '.join(self.not_run)}"
            self.lines.append(line)
            print(line, file=self.echo, flush=True)
            self.not_run.clear()

    def on_output(self, text: str) -> None:
        task = self.current.get(threading.get_ident())
        if task is not None:
            line = ANSI.sub("", text.rstrip("\n"))
            self.tails[task].append(line[len(KFP_INDENT) :] if line.startswith(KFP_INDENT) else line)

    def failure_tail(self) -> str:
        """The failed stage's error: the exception lines of its last traceback, else its last lines."""
        lines = [line for line in self.tails.get(self.failed or "", []) if line.strip()]
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        if starts:
            after = lines[starts[-1] + 1 :]
            first = next((i for i, line in enumerate(after) if not line.startswith(" ")), 0)  # after the frames
            lines = [line for line in after[first:] if " - ERROR - " not in line and not line.startswith("---")]
        return "\n".join(f"    | {line}" for line in lines[-ERROR_LINES:])


class _Tee:
    """A stdout replacement: everything to the log file, lines also to the stage tracker."""

    def __init__(self, log: TextIO, events: StageEvents) -> None:
        self.log, self.events, self._partial = log, events, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.events.on_output(line)
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def isatty(self) -> bool:
        return False


class _RecordFilter(logging.Filter):
    """Sees every record on the root logger (kfp.local replaces the root's handlers per task, not its
    filters) and passes it on unchanged."""

    def __init__(self, events: StageEvents) -> None:
        super().__init__()
        self.events = events

    def filter(self, record: logging.LogRecord) -> bool:
        self.events.on_message(record.getMessage())
        return True


@contextlib.contextmanager
def stage_lines(
    log_path: Path, key_figure: Callable[[str], str], display_names: dict[str, str] | None = None
) -> Iterator[StageEvents]:
    """Inside: stdout and stderr go to `log_path`, each finished stage prints one line to the real stdout
    (named by `display_names`: kfp task name -> the name set in the pipeline)."""
    echo = sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with log_path.open("w", encoding="utf-8") as log:
        events = StageEvents(key_figure=key_figure, echo=echo, display_names=display_names or {})
        record_filter = _RecordFilter(events)
        tee = _Tee(log, events)  # stderr too: Python warnings of every task would fill the terminal
        # kfp.local logs skipped tasks outside its per-task logging context: send those to the file too
        # (each task context restores the handlers it found, i.e. this one)
        root.handlers = [logging.StreamHandler(tee)]
        root.setLevel(logging.INFO)
        root.addFilter(record_filter)
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                yield events
        finally:
            root.removeFilter(record_filter)
            root.handlers, root.level = handlers, level
            events.report_not_run()


def executor_figure(pipeline_root: Path, gate_metric: str) -> Callable[[str], str]:
    """The key figure of a finished task, read from its executor_output.json in the newest run."""

    def figure(task: str) -> str:
        runs = sorted(pipeline_root.glob("state-train-*"), reverse=True)
        found = next(
            (r / task / "executor_output.json" for r in runs if (r / task / "executor_output.json").is_file()), None
        )
        if found is None:
            return ""
        output = json.loads(found.read_text())
        for artifact in output.get("artifacts", {}).values():
            for item in artifact.get("artifacts", []):
                value = item.get("metadata", {}).get(gate_metric)
                if isinstance(value, (int, float)):
                    return f"{gate_metric} = {value:.4g}"
        value = output.get("parameterValues", {}).get("Output")
        if isinstance(value, bool):
            return "promote" if value else "hold: nothing published"
        return "" if value is None else f"-> {str(value)[:16]}"

    return figure


def display_names(pipeline: object) -> dict[str, str]:
    """kfp task name -> display name, from a pipeline's spec (tasks inside conditions included)."""
    spec = pipeline.pipeline_spec  # type: ignore[attr-defined]
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    return {name: task.task_info.name or name for dag in dags for name, task in dag.tasks.items()}


__all__ = ["StageEvents", "display_names", "executor_figure", "stage_lines"]
