import numpy as np

from state_core.eval.de import DETable
from state_core.eval import de_metrics as dm

GENES = np.array([f"g{i}" for i in range(6)])


def _table(lfc, fdr):
    return DETable(
        perts=["A"],
        genes=GENES,
        log2_fold_change=np.array([lfc], float),
        p_value=np.array([fdr], float),
        fdr=np.array([fdr], float),
    )


def _cmp():
    real = _table([3.0, -2.0, 1.0, 0.5, 0.1, -0.1], [0.001, 0.01, 0.02, 0.2, 0.9, 0.049])
    pred = _table([2.0, 2.5, -0.2, 0.3, 4.0, 0.0], [0.001, 0.2, 0.01, 0.03, 0.04, 0.5])
    return dm.DEComparison(real, pred)


def test_overlap_and_precision_by_hand():
    cmp = _cmp()
    # real DEGs by |lfc|: g0(3), g1(2), g2(1), g5(0.1); pred DEGs: g4(4), g0(2), g3(0.3), g2(0.2)
    assert dm.overlap_at_k(cmp, None)[0] == 2 / 4  # top4 vs top4 share g0, g2
    assert dm.overlap_at_k(cmp, 2)[0] == 1 / 2  # {g0,g1} vs {g4,g0}
    assert dm.overlap_at_k(cmp, None, "precision")[0] == 2 / 4


def test_direction_recall_counts_by_hand():
    cmp = _cmp()
    # signs on real DEGs g0,g1,g2,g5: (+,+) (-,+) (+,-) (-,0) -> 1 of 4
    assert dm.de_direction_match(cmp)[0] == 0.25
    assert dm.de_sig_genes_recall(cmp)[0] == 2 / 4
    real, pred = dm.nsig_counts(cmp)
    assert (real[0], pred[0]) == (4, 4)


def test_auc_matches_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    cmp = _cmp()
    labels = np.array([1, 1, 1, 0, 0, 1])
    scores = -np.log10(np.array([0.001, 0.2, 0.01, 0.03, 0.04, 0.5], dtype=np.float32))
    assert abs(dm.de_auc(cmp, "pr")[0] - average_precision_score(labels, scores)) < 1e-12
    assert abs(dm.de_auc(cmp, "roc")[0] - roc_auc_score(labels, scores)) < 1e-12


def test_fdr_threshold_is_strict():
    real = _table([1, 1, 1, 1, 1, 1], [0.05, 0.05, 0.01, 1, 1, 1])
    cmp = dm.DEComparison(real, real)
    assert dm.nsig_counts(cmp)[0][0] == 1
