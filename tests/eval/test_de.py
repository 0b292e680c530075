import numpy as np
import scipy.sparse as sp

from state_core.eval.de import compute_de, de_from_frame
from state_core.eval.inputs import Groups


def _toy():
    # control: gene0 mean log1p 1.0, gene1 all zero; pert "A": gene0 log1p 2.0, gene1 log1p 1.0
    x = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 1.0], [2.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    labels = np.array(["ctrl", "ctrl", "A", "A", "B"])
    return x, Groups.build(labels, "ctrl")


def test_fold_change_is_log2_of_expm1_means():
    x, groups = _toy()
    table = compute_de(sp.csr_matrix(x), groups, np.array(["g0", "g1"]))
    a = table.perts.index("A")
    expected = np.log2(np.expm1(np.float32(2.0)) / np.expm1(np.float32(1.0)))
    assert abs(table.log2_fold_change[a, 0] - expected) < 1e-6
    assert table.log2_fold_change[a, 1] == np.inf  # one-sided zero, epsilon 0
    b = table.perts.index("B")
    assert table.log2_fold_change[b, 1] == 0.0  # 0/0 defined as no change
    assert table.log2_fold_change[b, 0] == -np.inf


def test_fdr_is_bh_within_each_perturbation():
    x, groups = _toy()
    table = compute_de(x, groups, np.array(["g0", "g1"]))
    for i in range(len(table.perts)):
        p = table.p_value[i]
        order = np.argsort(p)
        bh = np.minimum.accumulate((p[order] * p.size / np.arange(1, p.size + 1))[::-1])[::-1]
        np.testing.assert_allclose(table.fdr[i, order], np.minimum(bh, 1.0))


def test_frame_round_trip_keeps_values(tmp_path):
    x, groups = _toy()
    table = compute_de(x, groups, np.array(["g0", "g1"]))
    frame = table.to_frame()
    assert list(frame.columns[:2]) == ["target", "feature"] and len(frame) == 4
    back = de_from_frame(frame, "memory")
    np.testing.assert_array_equal(back.fdr, table.fdr)
    np.testing.assert_array_equal(back.log2_fold_change, table.log2_fold_change)


def test_column_writer_gives_the_same_bytes_as_the_frame_writer(tmp_path):
    from state_core.eval.csv_io import write_columns_csv, write_table_csv

    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(0.5, 1, size=(40, 6)), 0).astype(np.float32)
    labels = np.array(["ctrl"] * 10 + ["A"] * 10 + ["B, quoted"] * 10 + ["C"] * 10)
    genes = np.array([f"g{i}" for i in range(6)])
    for cpm_filter in (None, 2e5):  # the filter leaves some (pert, gene) rows out
        table = compute_de(x, Groups.build(labels, "ctrl"), genes, cpm_filter=cpm_filter)
        write_table_csv(table.to_frame(), tmp_path / "frame.csv")
        write_columns_csv(table.long_columns(), tmp_path / "columns.csv")
        assert (tmp_path / "frame.csv").read_bytes() == (tmp_path / "columns.csv").read_bytes()
    assert not table.present.all()
