"""ONNX export of the SE encoder: parity at dynamic shapes, metadata, Triton config."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from state_core.embed.export import export_se, random_sentences
from state_core.export.spec import signature_of_onnx
from state_core.serve.triton_config import config_for_backend, write_config


@pytest.fixture(scope="module")
def exported(se_model_dir, tmp_path_factory):
    return export_se(se_model_dir, tmp_path_factory.mktemp("se_onnx") / "se")


def test_export_passes_parity_at_shapes_other_than_the_example(exported):
    assert [(r.batch, r.seq) for r in exported.parity] == [(1, 5), (3, 17), (4, 64)]
    assert exported.worst <= 1e-5


def test_graph_signature_matches_the_declared_one(exported):
    sig = signature_of_onnx(exported.onnx_path)
    assert [(t.name, t.dtype, len(t.shape)) for t in sig.inputs] == [
        ("gene_ids", "INT64", 2),
        ("count_feat", "FP32", 2),
    ]
    assert sig.outputs[0].name == "x_state" and sig.outputs[0].shape[1] == 42


def test_onnx_runs_at_a_new_length_and_batch(exported):
    session = ort.InferenceSession(str(exported.onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, random_sentences(7, 129, vocab_size=50, seed=3))
    assert out.shape == (7, 42)
    np.testing.assert_allclose(np.linalg.norm(out[:, :32], axis=1), 1.0, rtol=1e-5)


def test_metadata_carries_the_vocabulary_and_sentence_settings(exported):
    meta = json.loads((exported.folder / "metadata.json").read_text())
    assert meta["model_kind"] == "state_embedding" and len(meta["gene_names"]) == 50
    assert meta["extra"]["pad_length"] == "64"


def test_triton_config_declares_dynamic_sentence_inputs(exported):
    text = write_config(exported.folder, config_for_backend("state_embedding", exported.signature)).read_text()
    assert 'name: "gene_ids"' in text and "TYPE_INT64" in text and "dims: [ 42 ]" in text
    assert text.count("dims: [ -1 ]") == 2


def test_export_folder_publishes_into_a_triton_repository_beside_st(exported, tmp_path):
    from state_core.serve.repository import publish_model

    published = publish_model(tmp_path / "repo", "state_embedding", exported.folder)
    version_dir = tmp_path / "repo" / "state_embedding" / str(published.version)
    assert (version_dir / "model.onnx").is_file() and (version_dir / "metadata.json").is_file()
    config = (tmp_path / "repo" / "state_embedding" / "config.pbtxt").read_text()
    assert 'name: "count_feat"' in config and 'name: "x_state"' in config
