"""A job in a forked child: its result or its error comes back; deferred jobs run once, on first use."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from state_core.errors import DataError
from state_core.eval.background import Deferred, Forked, background

needs_fork = pytest.mark.skipif(sys.platform != "linux", reason="fork is used on Linux only")


@needs_fork
def test_forked_job_returns_its_result_computed_from_inherited_data():
    data = np.arange(1_000_000, dtype=np.float64)  # shared copy-on-write, not sent to the child
    job = Forked(lambda: data[::2].sum())
    assert job.result() == data[::2].sum() and job.result() == data[::2].sum()


@needs_fork
def test_forked_job_error_is_raised_in_the_parent_with_its_type_and_message():
    def fails() -> None:
        raise DataError("pred.h5ad: obs['gene'] is missing")

    with pytest.raises(DataError, match="obs\\['gene'\\] is missing"):
        Forked(fails).result()


@needs_fork
def test_cancelled_child_is_stopped():
    job = Forked(lambda: __import__("time").sleep(30))
    job.cancel()
    assert not job._process.is_alive()


def test_deferred_runs_once_and_only_when_asked():
    calls = []
    job = Deferred(lambda: calls.append(1) or len(calls))
    assert calls == []
    assert job.result() == 1 and job.result() == 1 and calls == [1]


def test_one_thread_never_forks():
    assert isinstance(background(lambda: 1, parallel=False), Deferred)


class _Unpicklable(Exception):
    def __init__(self, a: str, b: str) -> None:  # pickle rebuilds it with one argument and fails
        super().__init__(f"{a} {b}")


@needs_fork
def test_an_error_that_cannot_be_rebuilt_comes_back_as_its_text():
    def fails() -> None:
        raise _Unpicklable("bad", "thing")

    with pytest.raises(RuntimeError, match="_Unpicklable: bad thing"):
        Forked(fails).result()
