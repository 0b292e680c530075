"""The main job end to end on a bundled synthetic dataset (what `make demo` runs).

synthetic Perturb-seq data -> split (fewshot TOML) -> train ST and a baseline -> predict the test split ->
cell-eval-compatible metrics and an HTML report for both, side by side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from state_core.config.train_config import parse_overrides
from state_core.data.synth import SynthSpec, write_synthetic_experiment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    data_dir: Path
    st_run: Path
    baseline_run: Path
    st_eval: Path
    baseline_eval: Path


def run_demo(out_dir: str | Path, *, n_cells: int = 6000, n_genes: int = 400, num_hvgs: int = 128,
             max_steps: int = 300, seed: int = 0) -> DemoResult:
    from state_core.train.fit import train_st
    from state_core.train.predict import predict_test_split

    out = Path(out_dir)
    spec = SynthSpec(n_cells=n_cells, n_genes=n_genes, n_cell_types=3, n_perturbations=16, n_batches=2, seed=seed)
    exp = write_synthetic_experiment(out / "data", spec, num_hvgs=num_hvgs)
    log.info("synthetic experiment in %s", out / "data")
    common = [f"data.kwargs.toml_config_path={exp.fewshot_toml}", "data.kwargs.embed_key=X_hvg",
              f"output_dir={out / 'runs'}", "overwrite=true", "training.progress_bar=false"]
    st_cfg = parse_overrides(common + [
        "name=st", "model=state_sm", "model.kwargs.hidden_dim=128", "model.kwargs.cell_set_len=32",
        "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=2",
        "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
        "model.kwargs.transformer_backbone_kwargs.intermediate_size=512",
        "training.batch_size=8", f"training.max_steps={max_steps}",
        "training.val_freq=100", "training.ckpt_every_n_steps=100", "training.lr=3e-4"])
    baseline_cfg = parse_overrides(common + ["name=perturb_mean", "model=perturb_mean", "training.max_steps=1"])
    st_run = train_st(st_cfg)
    base_run = train_st(baseline_cfg)
    st_eval = predict_test_split(st_run, profile="full")
    base_eval = predict_test_split(base_run, profile="full")
    return DemoResult(out / "data", st_run, base_run, st_eval, base_eval)
