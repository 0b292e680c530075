from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from state_core.export import ModelSignature, TensorSpec
from state_core.serve.triton_config import (
    local_config,
    production_config,
    render_config,
)

SIGNATURE = ModelSignature(
    inputs=(
        TensorSpec("ctrl_cell_emb", "FP32", ("batch", "set", 8)),
        TensorSpec("pert_idx", "INT64", ("batch",)),
        TensorSpec("set_mask", "BOOL", ("batch", "set")),
    ),
    outputs=(
        TensorSpec("pred_latent", "FP32", ("batch", "set", 8)),
        TensorSpec("pred_genes", "FP32", ("batch", "set", 10)),
    ),
)


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def io_sections(config: model_config_pb2.ModelConfig) -> list:
    return [
        (t.name, t.data_type, list(t.dims), list(t.reshape.shape), t.HasField("reshape"))
        for t in [*config.input, *config.output]
    ]


def test_production_config_runs_onnxruntime_on_gpu_with_dynamic_batching():
    config = parse(render_config(production_config("state_st", SIGNATURE, served_versions=(4,))))
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.instance_group[0].count == 2  # copies of one batch overlap compute of the other
    assert config.HasField("dynamic_batching")
    assert list(config.dynamic_batching.preferred_batch_size) == []  # unset: no cap below max_batch_size
    assert list(config.version_policy.specific.versions) == [4]


def test_batch_dim_is_implicit_and_pert_idx_is_reshaped_to_the_graph_rank():
    inputs = {t.name: t for t in parse(render_config(production_config("m", SIGNATURE))).input}
    assert list(inputs["ctrl_cell_emb"].dims) == [-1, 8]
    assert list(inputs["set_mask"].dims) == [-1] and inputs["set_mask"].data_type == model_config_pb2.TYPE_BOOL
    assert list(inputs["pert_idx"].dims) == [1] and inputs["pert_idx"].HasField("reshape")
    assert list(inputs["pert_idx"].reshape.shape) == []


def test_local_python_backend_config_has_identical_inputs_and_outputs():
    production = parse(render_config(production_config("state_st", SIGNATURE)))
    local = parse(render_config(local_config("state_st", SIGNATURE)))
    assert local.backend == "python" and local.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert io_sections(local) == io_sections(production)
    assert local.max_batch_size == production.max_batch_size


def test_preferred_batch_sizes_never_exceed_max_batch_size():
    config = parse(
        render_config(production_config("m", SIGNATURE, max_batch_size=16, preferred_batch_sizes=(8, 16, 32)))
    )
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]


def test_warmup_covers_batch_one_and_max_at_the_training_set_length():
    config = parse(render_config(production_config("m", SIGNATURE, max_batch_size=16, warmup_set_lengths=(32,))))
    assert [(w.batch_size, list(w.inputs["ctrl_cell_emb"].dims)) for w in config.model_warmup] == [
        (1, [32, 8]),
        (16, [32, 8]),
    ]
    assert all(
        set(w.inputs) == {"ctrl_cell_emb", "pert_idx", "set_mask"} and w.inputs["pert_idx"].zero_data
        for w in config.model_warmup
    )  # index 0 and mask False: always valid for the graph
    assert not parse(render_config(production_config("m", SIGNATURE))).model_warmup
