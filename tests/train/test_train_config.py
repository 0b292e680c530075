"""The `state tx train` override grammar: README command lines parse; bad keys are reported together."""

import pytest

from state_core.config.train_config import load_config, parse_overrides, save_config
from state_core.errors import ConfigError

README_COMMAND = [
    "data.kwargs.toml_config_path=examples/fewshot.toml",
    "data.kwargs.embed_key=X_hvg",
    "data.kwargs.num_workers=12",
    "data.kwargs.batch_col=batch_var",
    "data.kwargs.pert_col=target_gene",
    "data.kwargs.cell_type_key=cell_type",
    "data.kwargs.control_pert=TARGET1",
    "training.max_steps=40000",
    "training.val_freq=100",
    "training.ckpt_every_n_steps=100",
    "training.batch_size=8",
    "training.lr=1e-4",
    "model.kwargs.cell_set_len=64",
    "model.kwargs.hidden_dim=328",
    "model=pertsets",
    "wandb.tags=[test]",
    "output_dir=/tmp/state",
    "name=test",
]


def test_readme_command_line_parses():
    cfg = parse_overrides(README_COMMAND)
    assert cfg.model.name == "pertsets"
    assert cfg.model.kwargs == {"cell_set_len": 64, "hidden_dim": 328}
    assert cfg.data.kwargs.pert_col == "target_gene"
    assert cfg.training.batch_size == 8 and cfg.training.lr == pytest.approx(1e-4)
    assert cfg.wandb.tags == ["test"]
    assert str(cfg.run_dir) == "/tmp/state/test"
    assert cfg.use_wandb is False


def test_unknown_keys_are_all_reported_with_suggestions():
    with pytest.raises(ConfigError) as err:
        parse_overrides(["data.kwargs.toml_config_path=x.toml", "training.max_step=10", "wandb.tagz=[a]"])
    text = str(err.value)
    assert "2 problems" in text
    assert "training.max_step" in text and "training.max_steps" in text
    assert "wandb.tagz" in text and "wandb.tags" in text


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError) as err:
        parse_overrides(["data.kwargs.toml_config_path=x.toml", "training.batch_size=abc"])
    assert "training.batch_size" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_overrides(["data.kwargs.toml_config_path=x.toml", "data.kwargs.output_space=genes"])
    assert "data.kwargs.output_space" in str(err.value)


def test_missing_toml_is_an_error():
    with pytest.raises(ConfigError) as err:
        parse_overrides([])
    assert "data.kwargs.toml_config_path" in str(err.value)


def test_resolved_config_round_trips(tmp_path):
    cfg = parse_overrides(README_COMMAND)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_precision_auto_follows_the_hardware():
    import torch

    from state_core.train.fit import cpu_has_fast_bf16, resolve_precision

    assert resolve_precision("32-true") == "32-true"
    expected = "bf16-mixed" if torch.cuda.is_available() or cpu_has_fast_bf16() else "32-true"
    assert resolve_precision("auto") == expected


def test_matmul_precision_is_validated_resolved_and_put_back():
    import torch

    from state_core.train.fit import float32_matmul_precision, resolve_matmul_precision

    with pytest.raises(ConfigError) as err:
        parse_overrides(["data.kwargs.toml_config_path=x.toml", "training.matmul_precision=low"])
    assert "training.matmul_precision" in str(err.value) and "medium" in str(err.value)
    assert resolve_matmul_precision("high") == "high"
    assert resolve_matmul_precision("auto", "cpu") == "medium"
    before = torch.get_float32_matmul_precision()
    with float32_matmul_precision("medium" if before != "medium" else "high"):
        assert torch.get_float32_matmul_precision() != before
    assert torch.get_float32_matmul_precision() == before
