"""Parity of imported arc-state checkpoints: train tiny models with arc-state's own `state tx train`,
import them with `import_arc_state_run`, and compare predictions on the same inputs.

Usage:  python bench/arc_parity.py [--venv /tmp/arcvenv] [--work /tmp/arc_parity]

arc-state lives in a separate venv (created here if missing: arc-state, transformers==4.52.3, the
local CPU torch) because its dependencies must not enter ours. Prints the max |difference| of the
latent and gene predictions per case; parity means <= 1e-5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from state_core.data.synth import SynthSpec, write_synthetic_experiment
from state_core.runs.arc_import import import_arc_state_run
from state_core.runs.load import load_run

TOLERANCE = 1e-5
TINY_LLAMA = [
    "model=state",
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=8",
    "model.kwargs.n_encoder_layers=2",
    "model.kwargs.n_decoder_layers=2",
    "model.kwargs.transformer_backbone_kwargs.num_hidden_layers=2",
    "model.kwargs.transformer_backbone_kwargs.num_attention_heads=4",
    "model.kwargs.transformer_backbone_kwargs.num_key_value_heads=4",
    "model.kwargs.transformer_backbone_kwargs.head_dim=16",  # 4 x 16 != 32, as in arc's `state` preset
    "model.kwargs.transformer_backbone_kwargs.intermediate_size=64",
    "+model.kwargs.decoder_hidden_dims=[16,16]",
]
# GPT2 under eager attention, the only setting in which arc-state's GPT2 is bidirectional (spec 1.4)
TINY_GPT2 = [
    "model=pertsets",
    "model.kwargs.hidden_dim=32",
    "model.kwargs.cell_set_len=8",
    "model.kwargs.transformer_backbone_kwargs.n_layer=2",
    "model.kwargs.transformer_backbone_kwargs.n_head=4",
    "+model.kwargs.transformer_backbone_kwargs.attn_implementation=eager",
    "model.kwargs.decoder_hidden_dims=[16,16]",
]
CASES = {
    "llama_se_gene_batch": [
        "data.kwargs.embed_key=X_state",
        "data.kwargs.output_space=gene",
        "model.kwargs.batch_encoder=true",
        *TINY_LLAMA,
    ],
    "llama_hvg_all": ["data.kwargs.embed_key=X_hvg", "data.kwargs.output_space=all", *TINY_LLAMA],
    "gpt2_se_gene": ["data.kwargs.embed_key=X_state", "data.kwargs.output_space=gene", *TINY_GPT2],
}

ARC_PREDICT = textwrap.dedent("""
    import sys, numpy as np, torch
    from state.tx.models.state_transition import StateTransitionPerturbationModel
    ckpt, inputs, out = sys.argv[1:4]
    model = StateTransitionPerturbationModel.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    data = np.load(inputs)
    latents, genes = [], []
    with torch.no_grad():
        for ctrl, pert, batch in zip(data["ctrl"], data["pert_onehot"], data["batch_onehot"]):
            s = ctrl.shape[0]
            feed = {"ctrl_cell_emb": torch.from_numpy(ctrl), "pert_emb": torch.from_numpy(pert).expand(s, -1),
                    "batch": torch.from_numpy(batch)}
            y = model.forward(feed, padded=False)
            latents.append(y.numpy())
            genes.append(model.gene_decoder(y).numpy() if model.gene_decoder is not None else np.zeros((s, 0)))
    np.savez(out, latent=np.stack(latents), genes=np.stack(genes))
""")


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not (venv / "bin" / "state").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "arc-state", "transformers==4.52.3", "torch==2.13.0"],
            check=True,
        )
    return python


def train_arc(venv: Path, data_dir: Path, toml: Path, runs: Path, name: str, overrides: list[str]) -> Path:
    args = [
        str(venv / "bin" / "state"),
        "tx",
        "train",
        f"data.kwargs.toml_config_path={toml}",
        "data.kwargs.num_workers=0",
        "data.kwargs.pert_col=gene",
        "data.kwargs.cell_type_key=cell_type",
        "data.kwargs.batch_col=gem_group",
        "data.kwargs.control_pert=non-targeting",
        "training.batch_size=2",
        "training.max_steps=4",
        "training.val_freq=4",
        "training.ckpt_every_n_steps=4",
        "use_wandb=false",
        f"output_dir={runs}",
        f"name={name}",
        *overrides,
    ]
    log = runs / f"{name}.log"
    runs.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        result = subprocess.run(args, cwd=data_dir, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"arc-state training failed for {name}; see {log}")
    return runs / name


def compare(python: Path, arc_run: Path, ours: Path, work: Path, seed: int = 0) -> tuple[float, float]:
    loaded = load_run(ours)
    vocab, model = loaded.vocab, loaded.model
    g = torch.Generator().manual_seed(seed)
    n_sets, s = 4, 7  # unlike training S=8; GPT2 in arc-state still indexes its (zeroed) position table, so S <= 8
    ctrl = torch.randn(n_sets, s, model.config.input_dim, generator=g).abs()  # [N, S, D_in]
    pert_idx = torch.arange(n_sets) % len(vocab.perturbations)  # [N]
    n_batches = max(len(vocab.batches), 1)
    batch_idx = torch.randint(0, n_batches, (n_sets, s), generator=g)  # [N, S]
    inputs = work / f"{ours.name}_inputs.npz"
    np.savez(
        inputs,
        ctrl=ctrl.numpy(),
        pert_onehot=model.pert_features[pert_idx].numpy(),
        batch_onehot=torch.nn.functional.one_hot(batch_idx, n_batches).float().numpy(),
    )
    arc_out = work / f"{ours.name}_arc.npz"
    script = work / "arc_predict.py"
    script.write_text(ARC_PREDICT)
    subprocess.run(
        [str(python), str(script), str(arc_run / "checkpoints" / "final.ckpt"), str(inputs), str(arc_out)],
        check=True,
        capture_output=True,
    )
    reference = np.load(arc_out)
    with torch.no_grad():
        out = model(ctrl, pert_idx, batch_idx if model.config.n_batches else None)
    latent_diff = float(np.abs(out.latent.numpy() - reference["latent"]).max())
    gene_diff = float(np.abs(out.genes.numpy() - reference["genes"]).max()) if out.genes is not None else 0.0
    return latent_diff, gene_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/arcvenv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/arc_parity"))
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    shutil.rmtree(args.work, ignore_errors=True)
    exp = write_synthetic_experiment(
        args.work / "data",
        SynthSpec(n_cells=600, n_genes=80, n_cell_types=3, n_perturbations=5, n_batches=2, seed=1),
        num_hvgs=24,
        embed_key="X_state",
        embed_dim=16,
    )
    results = {}
    for name in args.cases:
        arc_run = train_arc(
            args.venv, exp.zeroshot_toml.parent, exp.zeroshot_toml, args.work / "arc_runs", name, CASES[name]
        )
        ours = import_arc_state_run(arc_run, args.work / "imported" / name).run_dir
        latent_diff, gene_diff = compare(python, arc_run, ours, args.work)
        results[name] = {
            "max_abs_diff_latent": latent_diff,
            "max_abs_diff_genes": gene_diff,
            "parity": max(latent_diff, gene_diff) <= TOLERANCE,
        }
        print(
            f"{name:24s} latent {latent_diff:.2e}  genes {gene_diff:.2e}  "
            f"{'OK' if results[name]['parity'] else 'MISMATCH'}"
        )
    print(json.dumps(results, indent=2))
    sys.exit(0 if all(r["parity"] for r in results.values()) else 1)


if __name__ == "__main__":
    main()
