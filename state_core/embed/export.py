"""ONNX export of the SE encoder (cell sentence in, X_state out) with a parity gate.

Graph contract:
    gene_ids    INT64 [batch, seq]   vocabulary ids; slot 0 is the CLS slot (its id is ignored)
    count_feat  FP32  [batch, seq]   100 x expression weight per slot
    x_state     FP32  [batch, o+10]  unit-norm cell embedding, then the dataset embedding
Both axes are dynamic (the model has no positions and no mask). Sentence building stays outside the
graph, in `state_core.embed.sentences` (seeded numpy). The gene projection is precomputed into a [V, d]
table inside the graph (`SEEncoderGraph`). The file is only written when ONNX Runtime matches PyTorch
within the tolerance at shapes other than the export example. Its Triton `config.pbtxt` is written by
`state_core.serve.triton_config` from `se_signature`, like every other one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from state_core.embed.artifact import LoadedSE, load_se_model
from state_core.embed.transform import resolve_model_dir
from state_core.errors import ArtifactError
from state_core.export.onnx_export import export_gated
from state_core.export.metadata import METADATA_FILE, ModelMetadata
from state_core.export.spec import ModelSignature, TensorSpec
from state_core.models.se import SEEncoderGraph

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
EXAMPLE_SHAPE = (2, 16)  # (batch, seq); 0/1 would be specialised by torch.export
PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 5), (3, 17), (4, 64))


def se_signature(output_dim: int) -> ModelSignature:
    """The typed inputs/outputs of the SE encoder graph (what the Triton config writer needs)."""
    return ModelSignature(
        inputs=(TensorSpec("gene_ids", "INT64", ("batch", "seq")), TensorSpec("count_feat", "FP32", ("batch", "seq"))),
        outputs=(TensorSpec("x_state", "FP32", ("batch", output_dim + 10)),),
    )


@dataclass(frozen=True)
class SEParityRow:
    batch: int
    seq: int
    max_abs_diff: float


@dataclass(frozen=True)
class SEExport:
    folder: Path
    onnx_path: Path
    signature: ModelSignature
    parity: tuple[SEParityRow, ...]
    tolerance: float

    @property
    def worst(self) -> float:
        return max(r.max_abs_diff for r in self.parity)


def random_sentences(batch: int, seq: int, vocab_size: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "gene_ids": rng.integers(0, vocab_size, size=(batch, seq)).astype(np.int64),  # [B, L]
        "count_feat": (rng.random((batch, seq)) * 5.0).astype(np.float32),  # [B, L]
    }


def check_parity(
    graph: SEEncoderGraph, onnx_path: Path, vocab_size: int, shapes: tuple[tuple[int, int], ...], tolerance: float
) -> tuple[SEParityRow, ...]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = []
    for i, (b, s) in enumerate(shapes):
        feeds = random_sentences(b, s, vocab_size, seed=i)
        with torch.no_grad():
            expected = graph(torch.from_numpy(feeds["gene_ids"]), torch.from_numpy(feeds["count_feat"])).numpy()
        (got,) = session.run(["x_state"], feeds)
        rows.append(SEParityRow(b, s, float(np.abs(got - expected).max())))
    worst = max(r.max_abs_diff for r in rows)
    if worst > tolerance:
        table = ", ".join(f"({r.batch},{r.seq}): {r.max_abs_diff:.2e}" for r in rows)
        raise ArtifactError(
            f"SE ONNX export failed the parity gate: {worst:.2e} > {tolerance:g} [{table}]; nothing was written"
        )
    return tuple(rows)


def export_encoder_onnx(
    loaded: LoadedSE, out_path: Path, *, shapes: tuple[tuple[int, int], ...] = PARITY_SHAPES, tolerance: float = 1e-5
) -> tuple[SEParityRow, ...]:
    """Write the encoder graph to `out_path` if it passes the parity gate (temp file, then rename)."""
    if EXAMPLE_SHAPE in shapes or not shapes:
        raise ValueError(f"parity shapes must be non-empty and differ from the export example {EXAMPLE_SHAPE}")
    graph = SEEncoderGraph(loaded.model.cpu().float()).eval()
    vocab_size = len(loaded.vocab)
    example = random_sentences(*EXAMPLE_SHAPE, vocab_size, seed=99)
    args = (torch.from_numpy(example["gene_ids"]), torch.from_numpy(example["count_feat"]))
    batch, seq = torch.export.Dim("batch", min=1, max=65536), torch.export.Dim("seq", min=2, max=65536)
    return export_gated(
        graph,
        args,
        ({0: batch, 1: seq}, {0: batch, 1: seq}),
        out_path,
        lambda tmp: check_parity(graph, tmp, vocab_size, shapes, tolerance),
        input_names=["gene_ids", "count_feat"],
        output_names=["x_state"],
        what="SE ONNX",
    )


def export_se(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    tolerance: float = 1e-5,
    shapes: tuple[tuple[int, int], ...] = PARITY_SHAPES,
) -> SEExport:
    """Export an SE model folder to `out_dir/{model.onnx, metadata.json}`.

    `metadata.json` carries the gene vocabulary (row i = `gene_ids` value i) and the sentence settings a
    client needs to build inputs the way `emb transform` does.
    """
    model_dir = resolve_model_dir(model_dir)
    loaded = load_se_model(model_dir)
    out = Path(out_dir)
    rows = export_encoder_onnx(loaded, out / ONNX_FILE, shapes=shapes, tolerance=tolerance)
    signature = se_signature(loaded.meta.config.output_dim)
    sentence = loaded.meta.sentence
    ModelMetadata(
        model_kind="state_embedding",
        run_id=loaded.meta.model_id,
        signature=signature,
        gene_names=tuple(loaded.vocab),
        extra={
            "pad_length": str(sentence.pad_length),
            "compat": str(sentence.compat).lower(),
            "input_kind": loaded.meta.convention.input_kind,
            "vocab_digest": loaded.meta.vocab_digest,
            "model_dir": str(model_dir.resolve()),
        },
    ).save(out / METADATA_FILE)
    log.info("exported SE encoder %s -> %s (worst parity %.2e)", model_dir, out, max(r.max_abs_diff for r in rows))
    return SEExport(out, out / ONNX_FILE, signature, rows, tolerance)
