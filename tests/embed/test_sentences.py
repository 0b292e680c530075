"""Cell-sentence construction: selection, CLS slot, seeding, compat quirks, task genes."""

from __future__ import annotations

import numpy as np
import pytest

from state_core.embed.sentences import (
    CellGenes,
    SentenceSpec,
    TaskSpec,
    build_sentence,
    build_sentences,
    cell_rng,
    sample_task_genes,
    shared_gene_targets,
    to_log_expression,
)


def cell(values: list[float]) -> CellGenes:
    expr = np.asarray(values, dtype=np.float32)
    return CellGenes(vocab_ids=np.arange(100, 100 + len(expr)), log_expr=expr)


def test_sentence_keeps_the_top_expressed_genes_when_the_cell_has_enough():
    values = np.zeros(30, dtype=np.float32)
    values[[3, 7, 11, 20]] = [5.0, 4.0, 3.0, 2.0]
    ids, counts = build_sentence(cell(values.tolist()), cell_rng(0, 0), SentenceSpec(pad_length=4))
    assert ids.shape == counts.shape == (4,)
    assert ids[1:].tolist() == [103, 107, 111]
    np.testing.assert_allclose(counts[1:], 100 * values[[3, 7, 11]] / values.sum(), rtol=1e-6)


def test_fixed_mode_cls_slot_has_zero_count_and_compat_carries_gene_3():
    c = cell([1.0, 2.0, 3.0, 4.0, 0.0, 0.0])
    _, fixed = build_sentence(c, cell_rng(0, 0), SentenceSpec(pad_length=4))
    ids, compat = build_sentence(c, cell_rng(0, 0), SentenceSpec(pad_length=4, compat=True))
    assert fixed[0] == 0.0
    assert compat[0] == pytest.approx(100 * 4.0 / 10.0)  # local gene #3's weight: the CLS-count quirk
    assert ids[0] == 103


def test_short_cell_fixed_mode_uses_every_gene_before_repeating():
    c = cell([2.0, 1.0, 0.0, 0.0, 0.0])
    ids, _ = build_sentence(c, cell_rng(1, 5), SentenceSpec(pad_length=8))  # 7 slots, 5 genes
    assert set(ids[1:6].tolist()) == set(range(100, 105))
    assert set(ids[6:].tolist()) <= {102, 103, 104}  # repeats are unexpressed genes only


def test_short_cell_compat_mode_fills_with_unexpressed_genes_only():
    c = cell([2.0, 1.0, 0.0, 0.0, 0.0])
    ids, _ = build_sentence(c, cell_rng(1, 5), SentenceSpec(pad_length=12, compat=True))
    assert ids[1:3].tolist() == [100, 101]
    assert set(ids[3:].tolist()) <= {102, 103, 104}


def test_cell_expressing_every_gene_does_not_crash():
    ids, _ = build_sentence(cell([1.0, 2.0, 3.0]), cell_rng(0, 0), SentenceSpec(pad_length=10, compat=True))
    assert set(ids[1:].tolist()) <= {100, 101, 102}


def test_sentences_depend_on_seed_and_cell_not_on_block():
    rng = np.random.default_rng(0)
    rows = rng.poisson(0.3, size=(6, 50)).astype(np.float32)
    vocab = np.arange(50)
    spec = SentenceSpec(pad_length=16)
    whole = build_sentences(rows, vocab, np.arange(6), seed=3, spec=spec)
    tail = build_sentences(rows[4:], vocab, np.arange(4, 6), seed=3, spec=spec)
    again = build_sentences(rows, vocab, np.arange(6), seed=3, spec=spec)
    other = build_sentences(rows, vocab, np.arange(6), seed=4, spec=spec)
    np.testing.assert_array_equal(whole.gene_ids, again.gene_ids)
    np.testing.assert_array_equal(whole.gene_ids[4:], tail.gene_ids)
    assert not np.array_equal(whole.gene_ids, other.gene_ids)  # ties among zero genes are seeded draws


def test_unknown_genes_are_dropped_and_excluded_from_weights():
    rows = np.array([[4.0, 100.0, 1.0, 0.0]], dtype=np.float32)
    column_ids = np.array([10, -1, 11, 12])
    s = build_sentences(rows, column_ids, np.arange(1), seed=0, spec=SentenceSpec(pad_length=4))
    assert -1 not in s.gene_ids
    assert s.gene_ids[0, 1:].tolist() == [10, 11, 12]
    np.testing.assert_allclose(s.count_feat[0, 1:], [80.0, 20.0, 0.0], rtol=1e-6)


def test_raw_input_gets_log1p_and_target_sum_scaling():
    rows = np.array([[1.0, 3.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(to_log_expression(rows, "raw", None), np.log1p(rows))
    np.testing.assert_allclose(to_log_expression(rows, "raw", 100.0), np.log1p([[25.0, 75.0, 0.0]]), rtol=1e-6)
    np.testing.assert_array_equal(to_log_expression(rows, "log1p", None), rows)


def test_task_genes_have_fixed_size_and_correct_targets():
    c = cell([0.0, 2.0, 0.5, 0.0, 3.0, 0.0])
    task = TaskSpec(positives=4, negatives=5, shared=0)
    ids, targets = sample_task_genes(c, cell_rng(0, 1), task, compat=False)
    assert ids.shape == targets.shape == (9,)
    assert (targets[:4] > 0).all() and (targets[4:] == 0).all()
    np.testing.assert_array_equal(targets, c.log_expr[ids - 100])


def test_shared_targets_are_zero_for_genes_missing_from_the_dataset():
    c = CellGenes(vocab_ids=np.array([5, 2, 9]), log_expr=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    out = shared_gene_targets([c], np.array([9, 4, 2]))
    np.testing.assert_array_equal(out, [[3.0, 0.0, 2.0]])
