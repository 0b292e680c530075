import numpy as np
import scipy.sparse as sp

from state_core.eval import anndata_metrics as am
from state_core.eval.inputs import Groups
from state_core.eval.pseudobulk import Pseudobulk


def _pb(real, pred, real_ctrl, pred_ctrl, perts):
    f = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return Pseudobulk(
        perts, f(real), f(pred), f(real_ctrl), f(pred_ctrl), np.asarray(real, float), np.asarray(pred, float)
    )


def test_mse_mae_ignore_control_and_deltas_use_own_control():
    pb = _pb([[1, 2]], [[2, 2]], [0, 0], [1, 1], ["A"])
    assert am.mse(pb)[0] == 0.5 and am.mae(pb)[0] == 0.5
    # real delta [1,2], pred delta [1,1]
    assert am.mse_delta(pb)[0] == 0.5 and am.mae_delta(pb)[0] == 0.5


def test_discrimination_rank_and_target_gene_exclusion():
    genes = np.array(["A", "B", "C"])
    real = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]
    pred_good = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]
    pb = _pb(real, pred_good, [0, 0, 0], [0, 0, 0], ["A", "B", "C"])
    assert np.all(am.discrimination_score(pb, genes, "l1") == 1.0)
    # pred of A matches real C best once gene A is excluded: rank 1 of 3 -> 1 - 1/3
    pred_bad = [[5, 0, 4], [0, 5, 0], [0, 0, 5]]
    pb = _pb(real, pred_bad, [0, 0, 0], [0, 0, 0], ["A", "B", "C"])
    assert abs(am.discrimination_score(pb, genes, "l1")[0] - (1 - 1 / 3)) < 1e-12


def test_energy_distance_v_statistic_by_hand():
    # 1-D: pert cells {0, 2}, control {1}: 2*mean|p-c| = 2, mean|p-p'| over 4 pairs = (0+2+2+0)/4 = 1
    x = sp.csr_matrix(np.array([[0.0], [2.0], [1.0]]))
    groups = Groups.build(np.array(["A", "A", "ctrl"]), "ctrl")
    assert abs(am.energy_distances(x, groups)[0] - 1.0) < 1e-12


def test_energy_distances_match_pairwise_definition():
    # uneven groups, dense and sparse input: the pairwise definition's values
    rng = np.random.default_rng(0)
    labels = np.array(["ctrl"] * 7 + ["A"] * 3 + ["B"] * 5 + ["C"] * 1 + ["D"] * 4)
    x = rng.poisson(1.0, size=(labels.size, 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    groups = Groups.build(labels, "ctrl")

    def mean_dist(a, b):
        return np.sqrt(((a[:, None, :].astype(float) - b[None, :, :]) ** 2).sum(-1)).mean()

    ctrl = x[labels == "ctrl"]
    expected = [2 * mean_dist(x[labels == p], ctrl) - mean_dist(x[labels == p], x[labels == p]) - mean_dist(ctrl, ctrl)
                for p in groups.perts]  # fmt: skip
    for matrix in (x, sp.csr_matrix(x)):
        np.testing.assert_allclose(am.energy_distances(matrix, groups), expected, rtol=1e-12, atol=1e-12)


def test_pearson_constant_row_is_nan():
    r = am.rowwise_pearson(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 2.0, 3.0]]))
    assert np.isnan(r[0])


def test_adjusted_mutual_info_matches_sklearn():
    from sklearn.metrics import adjusted_mutual_info_score

    from state_core.eval.clustering import adjusted_mutual_info

    rng = np.random.default_rng(0)
    for _ in range(30):
        a, b = rng.integers(0, 4, 25), rng.integers(0, 3, 25)
        assert abs(adjusted_mutual_info(a, b) - adjusted_mutual_info_score(a, b)) < 1e-12


def test_clustering_agreement_is_one_for_identical_centroids():
    from state_core.eval.clustering import clustering_agreement

    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(c, 0.1, size=(8, 5)) for c in (0.0, 3.0, 6.0)])
    assert abs(clustering_agreement(points, points) - 1.0) < 1e-12
