"""The guard step's checks on their own (no server): each malformed request gets one message naming input and set."""

from __future__ import annotations

import numpy as np
import pytest

from state_core.serve.guard_model import RequestError, check_request

PERTS = ["non-targeting", "GENE_A", "GENE_B"]


def request(n_sets: int = 2, set_len: int = 4, **overrides) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "ctrl_cell_emb": rng.standard_normal((n_sets, set_len, 3)).astype(np.float32),  # [B, S, D]
        "pert_idx": np.arange(n_sets, dtype=np.int64).reshape(n_sets, 1) % len(PERTS),  # [B, 1]
        "batch_idx": np.zeros((n_sets, set_len), np.int64),  # [B, S]
        "set_mask": np.arange(set_len)[None, :].repeat(n_sets, 0) < set_len - 1,
    }  # last cell padding
    arrays.update(overrides)
    return arrays


def with_value(index: tuple[int, int], value: float) -> np.ndarray:
    ctrl = request()["ctrl_cell_emb"].copy()
    ctrl[index][0] = value
    return ctrl


def test_a_valid_request_passes_unchanged():
    arrays = request()
    graph = check_request(arrays, PERTS, n_batches=2)
    assert set(graph) == {"ctrl_cell_emb", "pert_idx", "batch_idx", "set_mask"}
    np.testing.assert_array_equal(graph["ctrl_cell_emb"], arrays["ctrl_cell_emb"])
    assert graph["pert_idx"].shape == (2, 1) and graph["ctrl_cell_emb"].flags.writeable


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ctrl_cell_emb": with_value((1, 0), np.nan)}, r"set 1 has a non-finite value .* in cell 0, a real cell"),
        ({"ctrl_cell_emb": with_value((0, 3), np.inf)}, r"set 0 has a non-finite value .* cell 3, a padding cell"),
        (
            {
                "ctrl_cell_emb": np.zeros((2, 0, 3), np.float32),
                "batch_idx": np.zeros((2, 0), np.int64),
                "set_mask": np.zeros((2, 0), bool),
            },
            "set length 0",
        ),
        ({"set_mask": np.array([[True] * 4, [False] * 4])}, r"set_mask: set 1 has no real cell"),
        ({"pert_idx": np.array([[0], [-1]])}, r"pert_idx: set 1 has -1, out of range .* 0\.\.2"),
        ({"pert_idx": np.array([[3], [0]])}, r"pert_idx: set 0 has 3, out of range"),
        ({"batch_idx": np.full((2, 4), 2)}, r"batch_idx: set 0 cell 0 has 2, out of range"),
        ({"set_mask": np.ones((2, 5), bool)}, "set_mask has shape"),
    ],
)
def test_malformed_requests_are_rejected_naming_input_and_set(overrides, message):
    with pytest.raises(RequestError, match=message):
        check_request(request(**overrides), PERTS, n_batches=2)


def test_perturbation_names_map_to_indices_and_unknown_names_are_named():
    arrays = request()
    del arrays["pert_idx"]
    graph = check_request(
        {**arrays, "pert_name": np.array([[b"GENE_B"], [b"non-targeting"]], dtype=object)}, PERTS, n_batches=2
    )
    assert graph["pert_idx"].ravel().tolist() == [2, 0]
    with pytest.raises(RequestError, match=r"pert_name: set 1 is 'GENE_Z'"):
        check_request({**arrays, "pert_name": np.array([[b"GENE_A"], [b"GENE_Z"]], dtype=object)}, PERTS, 2)
    with pytest.raises(RequestError, match="exactly one of pert_idx"):
        check_request(arrays, PERTS, 2)
