"""The restricted unpickler loads plain data and refuses every other class by name."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from state_core.errors import ArtifactError
from state_core.models.safe_unpickle import safe_pickle_load, safe_torch_load


class Payload:
    def __reduce__(self):  # would run a shell command under plain pickle.load
        import os

        return (os.system, ("echo should-not-run",))


def test_plain_pickle_with_numpy_round_trips(tmp_path: Path) -> None:
    data = {"gene_dim": np.int64(80), "names": [np.str_("a"), "b"], "x": np.arange(3.0), "t": (1, 2.5, None)}
    (tmp_path / "v.pkl").write_bytes(pickle.dumps(data))
    loaded = safe_pickle_load(tmp_path / "v.pkl")
    assert loaded["gene_dim"] == 80 and loaded["names"] == ["a", "b"] and loaded["t"] == (1, 2.5, None)
    np.testing.assert_array_equal(loaded["x"], np.arange(3.0))


def test_torch_file_with_tensors_loads(tmp_path: Path) -> None:
    torch.save(
        {"w": torch.ones(2, 3), "p": torch.nn.Parameter(torch.zeros(1)), "od": collections.OrderedDict(a=1)},
        tmp_path / "m.pt",
    )
    loaded = safe_torch_load(tmp_path / "m.pt")
    assert loaded["w"].shape == (2, 3) and loaded["od"] == {"a": 1}


def test_pickle_with_a_callable_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"a": Payload()}))
    with pytest.raises(ArtifactError, match=r"evil\.pkl.*(posix|os)\.system"):
        safe_pickle_load(tmp_path / "evil.pkl")


def test_torch_file_with_an_arbitrary_class_is_refused(tmp_path: Path) -> None:
    torch.save({"c": collections.Counter("aab")}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError, match="collections.Counter"):
        safe_torch_load(tmp_path / "evil.pt")


def test_tensors_inside_a_plain_pickle_load_restricted(tmp_path: Path) -> None:
    (tmp_path / "maps.pkl").write_bytes(pickle.dumps({"gem1": torch.tensor([1.0, 0.0])}))
    torch.testing.assert_close(safe_pickle_load(tmp_path / "maps.pkl")["gem1"], torch.tensor([1.0, 0.0]))
