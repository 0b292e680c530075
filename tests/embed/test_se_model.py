"""SE encoder module: shapes, normalisation, train/eval dropout, precomputed-token graph, decoder input order."""

from __future__ import annotations

import torch
from se_tiny import tiny_config

from state_core.models.se import SEEncoderGraph, StateEmbeddingModel, decoder_input, rda_from_targets


def model_and_inputs(batch: int = 3, seq: int = 64):
    torch.manual_seed(0)
    model = StateEmbeddingModel(tiny_config(), torch.randn(50, 32))
    ids = torch.randint(0, 50, (batch, seq))
    counts = torch.rand(batch, seq) * 10
    return model, ids, counts


def test_forward_shapes_and_unit_norm_cell_embedding():
    model, ids, counts = model_and_inputs()
    out = model.eval()(ids, counts)
    assert out.emb.shape == (3, 32) and out.ds.shape == (3, 10) and out.x_state.shape == (3, 42)
    torch.testing.assert_close(out.emb.norm(dim=-1), torch.ones(3))


def test_eval_mode_is_deterministic_despite_dropout():
    model, ids, counts = model_and_inputs()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, counts).x_state, model(ids, counts).x_state, rtol=0, atol=0)
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(ids, counts).x_state, model(ids, counts).x_state)


def test_cls_slot_gene_id_does_not_matter():
    model, ids, counts = model_and_inputs()
    other = ids.clone()
    other[:, 0] = (ids[:, 0] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids, counts).x_state, model(other, counts).x_state)


def test_precomputed_token_graph_matches_the_model():
    model, ids, counts = model_and_inputs(batch=2, seq=17)
    graph = SEEncoderGraph(model)
    with torch.no_grad():
        torch.testing.assert_close(graph(ids, counts), model.eval()(ids, counts).x_state, atol=1e-5, rtol=1e-5)


def test_decoder_input_order_is_gene_emb_rda_ds():
    gene = torch.full((2, 3, 4), 1.0)
    emb, ds = torch.full((2, 5), 2.0), torch.full((2, 10), 4.0)
    x = decoder_input(gene, emb, torch.tensor([3.0, 3.0]), ds)
    assert x.shape == (2, 3, 4 + 5 + 1 + 10)
    assert x[0, 0].tolist() == [1.0] * 4 + [2.0] * 5 + [3.0] + [4.0] * 10


def test_rda_is_mean_of_nonzero_targets_and_zero_for_empty_cells():
    targets = torch.tensor([[0.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(rda_from_targets(targets), torch.tensor([3.0, 0.0]))


def test_decode_and_dataset_head_shapes():
    model, ids, counts = model_and_inputs()
    out = model(ids, counts)
    genes = model.decoder_gene_embedding(torch.randint(0, 50, (3, 7)))  # [B, T, d]
    assert model.decode(out, genes, torch.ones(3)).shape == (3, 7)
    assert model.classify_dataset(out).shape == (3, 2)
