"""Exceptions that are part of the interface: one type per kind of user mistake.

Every error carries what was wrong (file, key or value) and what to do about it. The CLI prints
`str(err)` without a traceback and exits with status 2 (or the error's `exit_code`).
"""

from __future__ import annotations

from dataclasses import dataclass


class StateError(Exception):
    """Base class of every error a user can cause and fix."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config: where (`key`), what, and how to fix it."""

    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text


class ConfigError(StateError):
    """An invalid config file or override. Collects every problem so the user fixes them in one pass."""

    def __init__(self, source: str, problems: list[Problem] | Problem):
        self.source = source
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        n = len(self.problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class DataError(StateError):
    """An input data file is missing, unreadable or lacks a required column/key."""


class UnknownLabelError(StateError):
    """A label (perturbation, cell type, batch, gene) is not in the model's vocabulary."""

    def __init__(self, kind: str, unknown: list[str], known: list[str], where: str = ""):
        self.kind, self.unknown, self.known = kind, list(unknown), list(known)
        shown = ", ".join(map(repr, self.unknown[:10])) + (" ..." if len(self.unknown) > 10 else "")
        valid = ", ".join(map(repr, self.known[:20])) + (
            f" ... ({len(self.known)} in all)" if len(self.known) > 20 else ""
        )
        loc = f" in {where}" if where else ""
        super().__init__(
            f"{len(self.unknown)} unknown {kind}{'s' if len(self.unknown) != 1 else ''}{loc}: {shown}\n"
            f"    valid {kind}s: {valid}\n"
            f"    fix: rename them to a known {kind} or drop those cells"
        )


class ArtifactError(StateError):
    """A run folder, checkpoint or exported model is missing, incomplete or of the wrong kind."""


class ServingError(StateError):
    """The inference server is unreachable, not ready, or rejected a request."""


class PipelineHostError(StateError):
    """A Kubeflow Pipelines host is unreachable or refused a request."""


class MissingExtraError(StateError):
    """An optional dependency of one part of the library is not installed; the message names the extra."""


class TrainingInterrupted(StateError):
    """Training stopped on SIGTERM/SIGINT after writing a resumable checkpoint; exit status 128 + signal."""

    def __init__(self, signum: int, checkpoint: str):
        self.exit_code = 128 + int(signum)
        super().__init__(
            f"training stopped by signal {signum}; resumable checkpoint {checkpoint}\n"
            f"    fix: run the same `state tx train` command again to resume"
        )


class TrainingDiverged(StateError):
    """The training loss became NaN or infinite."""
