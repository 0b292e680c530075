import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from state_core.errors import ArtifactError, ServingError
from state_core.export.spec import signature_of_onnx
from state_core.serve.repo_store import RepositoryStore
from state_core.serve.repository import publish_model, rollback_to


def served_versions(store: RepositoryStore, model: str) -> list[int]:
    config = text_format.Parse(store.read_text(model, "config.pbtxt"), model_config_pb2.ModelConfig())
    return list(config.version_policy.specific.versions)


def test_publish_keeps_the_last_n_versions_and_serves_the_newest(exported, tmp_path):
    repo = tmp_path / "repo"
    for _ in range(4):
        published = publish_model(repo, "state_st", exported.folder, keep_last=2)
    assert published.version == 4 and published.removed_versions == (2,)
    for model in ("state_st", "state_st_guard", "state_st_onnx"):
        assert sorted(p.name for p in (repo / model).iterdir()) == ["3", "4", "config.pbtxt"]
    assert sorted(p.name for p in (repo / "state_st_onnx" / "4").iterdir()) == [
        "metadata.json",
        "model.onnx",
        "model.py",
    ]
    assert sorted(p.name for p in (repo / "state_st_guard" / "4").iterdir()) == ["metadata.json", "model.py"]
    assert sorted(p.name for p in (repo / "state_st" / "4").iterdir()) == ["metadata.json"]
    store = RepositoryStore(str(repo))
    assert served_versions(store, "state_st") == [4]
    # the steps keep the version served before loaded, so the old ensemble works until the new one is read
    assert served_versions(store, "state_st_onnx") == served_versions(store, "state_st_guard") == [3, 4]


def test_the_ensemble_runs_the_guard_then_the_graph_at_the_published_version(exported, tmp_path):
    publish_model(tmp_path, "state_st", exported.folder)
    publish_model(tmp_path, "state_st", exported.folder)
    config = text_format.Parse((tmp_path / "state_st" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "ensemble"
    steps = config.ensemble_scheduling.step
    assert [(s.model_name, s.model_version) for s in steps] == [("state_st_guard", 2), ("state_st_onnx", 2)]
    guard_out = set(steps[0].output_map.values())
    assert set(steps[1].input_map.values()) == guard_out  # the graph sees only checked tensors
    graph = text_format.Parse((tmp_path / "state_st_onnx" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert graph.platform == "onnxruntime_onnx"


def test_the_version_served_before_a_publish_survives_until_the_next_one(exported, tmp_path):
    def version_dirs() -> list[str]:
        return sorted(p.name for p in (tmp_path / "state_st").iterdir() if p.is_dir())

    publish_model(tmp_path, "state_st", exported.folder, keep_last=1)
    publish_model(tmp_path, "state_st", exported.folder, keep_last=1)
    assert version_dirs() == ["1", "2"]  # 1 was being served when 2 was published
    publish_model(tmp_path, "state_st", exported.folder, keep_last=1)
    assert version_dirs() == ["2", "3"]


def test_config_matches_the_onnx_graph_it_serves(exported, tmp_path):
    publish_model(tmp_path, "state_st", exported.folder)
    config = text_format.Parse(
        (tmp_path / "state_st_onnx" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    graph = signature_of_onnx(tmp_path / "state_st_onnx" / "1" / "model.onnx")
    assert [t.name for t in config.input] == [t.name for t in graph.inputs]
    assert [t.name for t in config.output] == [t.name for t in graph.outputs]
    for served, spec in zip(config.input, graph.inputs, strict=True):
        assert model_config_pb2.DataType.Name(served.data_type) == f"TYPE_{spec.dtype}"
        expected = [d if isinstance(d, int) else -1 for d in spec.shape[1:]] or [1]
        assert list(served.dims) == expected


def test_rollback_serves_an_older_kept_version(exported, tmp_path):
    for _ in range(2):
        publish_model(tmp_path, "state_st", exported.folder)
    rollback_to(tmp_path, "state_st", 1)
    store = RepositoryStore(str(tmp_path))
    assert served_versions(store, "state_st") == [1]
    assert served_versions(store, "state_st_onnx") == [1, 2]
    with pytest.raises(ServingError, match="version 7"):
        rollback_to(tmp_path, "state_st", 7)


def test_publish_of_an_incomplete_export_leaves_the_repository_unchanged(exported, tmp_path):
    publish_model(tmp_path / "repo", "state_st", exported.folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_bytes((exported.folder / "metadata.json").read_bytes())
    with pytest.raises(ArtifactError, match="model.onnx"):
        publish_model(tmp_path / "repo", "state_st", broken)
    for model in ("state_st", "state_st_guard", "state_st_onnx"):
        assert sorted(p.name for p in (tmp_path / "repo" / model).iterdir()) == ["1", "config.pbtxt"]


def test_bad_model_name_is_refused(exported, tmp_path):
    with pytest.raises(ServingError, match="model name"):
        publish_model(tmp_path, "a/b", exported.folder)


def test_publish_to_gcs_keeps_last_n(exported, gcs_bucket):
    repo = f"gs://{gcs_bucket}/triton"
    for _ in range(3):
        published = publish_model(repo, "state_st", exported.folder, keep_last=2)
    store = RepositoryStore(repo)
    assert store.versions("state_st") == [2, 3] and published.removed_versions == (1,)
    assert served_versions(store, "state_st") == [3]
    assert store.read_text("state_st", 3, "metadata.json") is not None


def test_the_local_view_serves_the_same_ensemble_and_keeps_the_graphs_settings(exported, tmp_path):
    from state_core.serve.local_view import build_local_view

    publish_model(
        tmp_path / "repo",
        "state_st",
        exported.folder,
        max_batch_size=16,
        parameters={"intra_op_threads": "2"},
        warmup_set_lengths=(6,),
    )
    view = build_local_view(tmp_path / "repo", tmp_path / "view")

    def parse(model: str, root) -> model_config_pb2.ModelConfig:
        return text_format.Parse((root / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())

    local, published = parse("state_st_onnx", view), parse("state_st_onnx", tmp_path / "repo")
    assert local.backend == "python" and published.platform == "onnxruntime_onnx"
    assert local.parameters["intra_op_threads"].string_value == "2"
    assert local.max_batch_size == 16 and len(local.model_warmup) == len(published.model_warmup) == 2
    for model in ("state_st", "state_st_guard"):  # ensemble and guard run as published
        assert parse(model, view) == parse(model, tmp_path / "repo")


def test_a_graph_without_the_st_inputs_is_served_alone(tmp_path):
    from state_core.export.spec import ModelSignature, TensorSpec
    from state_core.serve.ensemble import ServedLayout

    signature = ModelSignature(
        inputs=(TensorSpec("gene_ids", "INT64", ("batch", "seq")),),
        outputs=(TensorSpec("x_state", "FP32", ("batch", 4)),),
    )
    layout = ServedLayout.for_signature("state_embedding", signature)
    assert not layout.guarded and layout.models == ("state_embedding",) and layout.graph == "state_embedding"
