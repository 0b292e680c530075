import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_st import TinyST

from state_core.errors import ArtifactError
from state_core.export import GraphInputs, export_onnx
from state_core.export.onnx_export import graph_module
from state_core.export.parity import random_feeds
from state_core.models.st import StateTransitionModel, STConfig


@pytest.fixture(scope="module")
def st_export(tmp_module_dir):
    config = STConfig(
        input_dim=8,
        output_dim=8,
        n_perturbations=5,
        hidden_dim=16,
        n_layers=2,
        n_heads=2,
        ffn_dim=32,
        gene_dim=10,
        n_batches=3,
        decoder_hidden_dims=(16,),
        dropout=0.0,
    )
    model = StateTransitionModel(config).eval()
    inputs = GraphInputs(input_dim=8, num_perturbations=5, num_batches=3)
    return model, inputs, export_onnx(model, tmp_module_dir / "st.onnx", inputs)


def test_real_st_model_passes_parity_at_shapes_other_than_the_example(st_export):
    _, _, result = st_export
    shapes = {(r.batch, r.set_len) for r in result.parity.rows}
    assert (2, 8) not in shapes and len(shapes) >= 3
    assert result.parity.passed and result.parity.worst <= 1e-5
    assert result.path.exists()


def test_graph_has_the_documented_inputs_and_outputs(st_export):
    _, _, result = st_export
    sig = result.signature
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [
        ("ctrl_cell_emb", "FP32", ("batch", "set", 8)),
        ("pert_idx", "INT64", ("batch",)),
        ("batch_idx", "INT64", ("batch", "set")),
        ("set_mask", "BOOL", ("batch", "set")),
    ]
    assert [(t.name, t.shape) for t in sig.outputs] == [
        ("pred_latent", ("batch", "set", 8)),
        ("pred_genes", ("batch", "set", 10)),
    ]


def test_onnx_matches_torch_at_a_large_unseen_shape(st_export):
    model, inputs, result = st_export
    feeds = random_feeds(result.signature, 7, 64, 8, 5, 3, seed=11)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    latent, genes = session.run(None, feeds)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(feeds[k]) for k in ("ctrl_cell_emb", "pert_idx", "batch_idx", "set_mask")))
    real = feeds["set_mask"]
    assert np.abs(latent[real] - ref.latent.numpy()[real]).max() <= 1e-5
    assert np.abs(genes[real] - ref.genes.numpy()[real]).max() <= 1e-5


def test_optional_inputs_and_gene_output_are_left_out_when_absent(tmp_path):
    result = export_onnx(
        TinyST(num_genes=None),
        tmp_path / "plain.onnx",
        GraphInputs(input_dim=6, num_perturbations=4, with_mask=False),
        parity_shapes=((3, 5),),
    )
    assert [t.name for t in result.signature.inputs] == ["ctrl_cell_emb", "pert_idx"]
    assert [t.name for t in result.signature.outputs] == ["pred_latent"]


def test_failed_parity_gate_raises_and_writes_nothing(tmp_path):
    with pytest.raises(ArtifactError, match="parity gate"):
        export_onnx(
            TinyST(),
            tmp_path / "strict.onnx",
            GraphInputs(input_dim=6, num_perturbations=4),
            parity_shapes=((3, 17),),
            tolerance=1e-30,
        )
    assert list(tmp_path.iterdir()) == []


def test_parity_shapes_must_differ_from_the_export_example(tmp_path):
    with pytest.raises(ValueError, match="differ"):
        export_onnx(TinyST(), tmp_path / "x.onnx", GraphInputs(6, 4), parity_shapes=((2, 8),))


def test_padding_does_not_change_predictions_for_real_cells(st_export):
    # Key-padding mask: a set padded with junk cells predicts the same for its real cells.
    model, inputs, _ = st_export
    module = graph_module(model, inputs)
    rng = np.random.default_rng(0)
    ctrl = torch.from_numpy(rng.standard_normal((1, 6, 8)).astype(np.float32))
    batch = torch.zeros(1, 6, dtype=torch.long)
    full = module(ctrl[:, :4], torch.tensor([1]), batch[:, :4], torch.ones(1, 4, dtype=torch.bool))[0]
    mask = torch.tensor([[True] * 4 + [False] * 2])
    padded = module(ctrl, torch.tensor([1]), batch, mask)[0]
    assert torch.allclose(full, padded[:, :4], atol=1e-5)


def test_model_needing_inputs_outside_the_contract_is_refused(tmp_path):
    from state_core.models.baselines import build_model

    config = STConfig(input_dim=6, output_dim=6, n_perturbations=4, n_cell_types=2)
    with pytest.raises(ArtifactError, match="cannot be exported"):
        export_onnx(build_model("context_mean", config), tmp_path / "cm.onnx", GraphInputs(6, 4))
    assert list(tmp_path.iterdir()) == []


def test_the_exported_graph_keeps_padding_inert_even_for_nan(st_export):
    # StateTransitionModel zeroes padding rows before any layer; the ONNX graph must keep that step.
    _, _, result = st_export
    feeds = random_feeds(result.signature, 3, 9, 8, 5, 3, seed=5)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    clean = session.run(None, feeds)
    poisoned = feeds["ctrl_cell_emb"].copy()
    poisoned[~feeds["set_mask"]] = np.nan  # every padding row NaN
    assert (~feeds["set_mask"]).any()
    dirty = session.run(None, {**feeds, "ctrl_cell_emb": poisoned})
    real = feeds["set_mask"]
    for before, after in zip(clean, dirty, strict=True):
        assert np.isfinite(after[real]).all()
        assert np.abs(after[real] - before[real]).max() <= 1e-6
