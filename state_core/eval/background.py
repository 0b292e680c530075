"""One job run in a forked child process while this process works on, for a second core.

The DE test is numpy work on many small arrays, so threads serialise on the GIL (measured: two DE tables
on two threads took longer than one after the other). A forked child shares the inputs copy-on-write, so
nothing is copied in; only the result comes back through a pipe. Fork is used on Linux only (it is the
safe, cheap start method there); elsewhere, or with one thread, the job runs in this process when its
result is first asked for.
"""

from __future__ import annotations

import multiprocessing
import pickle  # only what the pipe sends between our own processes; never for files
import sys
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Deferred(Generic[T]):
    """`job` run here, once, when `result()` is first called."""

    def __init__(self, job: Callable[[], T]) -> None:
        self._job: Callable[[], T] | None = job
        self._value: T | None = None

    def result(self) -> T:
        if self._job is not None:
            self._value, self._job = self._job(), None
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        self._job = None


class Forked(Generic[T]):
    """`job` started now in a forked child; `result()` waits for it and re-raises its error, if any."""

    def __init__(self, job: Callable[[], T]) -> None:
        context = multiprocessing.get_context("fork")
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_run_and_send, args=(job, send), daemon=True)
        self._process.start()
        send.close()  # the child holds its own copy; EOF here then means the child is gone
        self._done = False
        self._value: T | None = None

    def result(self) -> T:
        if not self._done:
            try:
                ok, value = self._receive.recv()
            except EOFError:
                self._process.join()
                raise RuntimeError(f"background job died (exit code {self._process.exitcode})") from None
            finally:
                self._receive.close()
            self._process.join()
            self._done = True
            if not ok:
                raise value
            self._value = value
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop the child (the caller failed and will not ask for the result)."""
        if not self._done:
            self._process.terminate()
            self._process.join()
            self._receive.close()
            self._done = True


def _run_and_send(job: Callable[[], object], send) -> None:  # noqa: ANN001 (a multiprocessing Connection)
    try:
        send.send((True, job()))
    except BaseException as err:  # noqa: BLE001 (handed to the parent, which raises it)
        try:
            pickle.loads(pickle.dumps(err))  # the pipe pickles it; the parent must be able to rebuild it
        except Exception:  # an error that cannot make the trip: keep its type name and text
            err = RuntimeError(f"{type(err).__name__}: {err}")
        send.send((False, err))
    finally:
        send.close()


def background(job: Callable[[], T], parallel: bool) -> Deferred[T] | Forked[T]:
    """`job` in a forked child when `parallel` and fork is available, else deferred to its first use."""
    if parallel and sys.platform == "linux":
        return Forked(job)
    return Deferred(job)
