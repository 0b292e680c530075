"""The parity gate: an exported graph must give PyTorch's numbers at shapes it was not traced with.

The legacy exporter could bake the example's shapes into Reshape nodes and still declare dynamic
axes, so checking only the example shape proves nothing. We check several other (batch, set) shapes,
with padded cells in the mask, and refuse the export when any output differs by more than the
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from state_core.errors import ArtifactError
from state_core.export.spec import ModelSignature

# (batch, set) shapes checked by default; none equals the export example (2, 8).
DEFAULT_PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (1, 5), (3, 17), (5, 32))


@dataclass(frozen=True)
class ParityRow:
    batch: int
    set_len: int
    max_abs_diff: dict[str, float]  # output name -> max |onnx - torch| over real (unpadded) cells
    max_scaled_diff: float  # max |onnx - torch| / max(1, |torch|): absolute near 0, relative for large values


@dataclass(frozen=True)
class ParityReport:
    rows: tuple[ParityRow, ...]
    tolerance: float

    @property
    def worst(self) -> float:
        return max(r.max_scaled_diff for r in self.rows)

    @property
    def passed(self) -> bool:
        return self.worst <= self.tolerance

    def summary(self) -> str:
        lines = [f"ONNX Runtime vs PyTorch (tolerance {self.tolerance:g}):"]
        for r in self.rows:
            diffs = ", ".join(f"{k} {v:.2e}" for k, v in r.max_abs_diff.items())
            lines.append(f"  batch {r.batch:>3} set {r.set_len:>4}: {diffs} (scaled {r.max_scaled_diff:.2e})")
        return "\n".join(lines)


def random_feeds(
    signature: ModelSignature,
    batch: int,
    set_len: int,
    input_dim: int,
    num_perturbations: int,
    num_batches: int | None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Inputs of the given shape; the mask pads the tail of every set but the first (which stays full)."""
    rng = np.random.default_rng(seed)
    names = {t.name for t in signature.inputs}
    feeds: dict[str, np.ndarray] = {
        "ctrl_cell_emb": rng.standard_normal((batch, set_len, input_dim)).astype(np.float32),  # [B, S, D]
        "pert_idx": rng.integers(0, num_perturbations, size=batch).astype(np.int64),  # [B]
    }
    if "batch_idx" in names:
        feeds["batch_idx"] = rng.integers(0, num_batches or 1, size=(batch, set_len)).astype(np.int64)  # [B, S]
    if "set_mask" in names:
        lengths = rng.integers(1, set_len + 1, size=batch)
        lengths[0] = set_len
        feeds["set_mask"] = np.arange(set_len)[None, :] < lengths[:, None]  # [B, S] True = real cell
    return feeds


def compare(module: nn.Module, session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> ParityRow:
    """Run both on the same feeds; differences are measured on real cells only (padding is free)."""
    with torch.no_grad():
        expected = module(*(torch.from_numpy(feeds[i.name]) for i in session.get_inputs()))
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, feeds)
    batch, set_len = feeds["ctrl_cell_emb"].shape[:2]
    real = feeds.get("set_mask", np.ones((batch, set_len), dtype=bool))
    abs_diff: dict[str, float] = {}
    scaled = 0.0
    for meta, ref, out in zip(session.get_outputs(), expected, got, strict=True):
        ref_np = ref.numpy()[real]
        diff = np.abs(out[real] - ref_np)
        abs_diff[meta.name] = float(diff.max(initial=0.0))
        scaled = max(scaled, float((diff / np.maximum(1.0, np.abs(ref_np))).max(initial=0.0)))
    return ParityRow(int(batch), int(set_len), abs_diff, scaled)


def check_parity(
    module: nn.Module,
    onnx_path: Path,
    signature: ModelSignature,
    *,
    input_dim: int,
    num_perturbations: int,
    num_batches: int | None,
    shapes: tuple[tuple[int, int], ...],
    tolerance: float,
) -> ParityReport:
    """Compare `module` (the export wrapper) with the ONNX file at `shapes`; raise if the gate fails."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = tuple(
        compare(module, session, random_feeds(signature, b, s, input_dim, num_perturbations, num_batches, seed=i))
        for i, (b, s) in enumerate(shapes)
    )
    report = ParityReport(rows, tolerance)
    if not report.passed:
        raise ArtifactError(
            f"ONNX export of {onnx_path.name} failed the parity gate: worst difference {report.worst:.2e} > "
            f"{tolerance:g}\n{report.summary()}\n    fix: report this model config; the file was not written"
        )
    return report
