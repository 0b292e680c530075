"""`metadata.json`: what a client needs next to `model.onnx` to build requests and read answers.

Perturbation names map to `pert_idx` by their position in `perturbations`; gene names label the
columns of `pred_genes`. Plain JSON, written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from state_core.atomic import atomic_write_text
from state_core.errors import ArtifactError, UnknownLabelError
from state_core.export.spec import ModelSignature

METADATA_FILE = "metadata.json"
METADATA_FORMAT = 1


@dataclass(frozen=True)
class ModelMetadata:
    model_kind: str  # "state_transition", a baseline name, "state_embedding", ...
    run_id: str  # the training run that produced the weights
    signature: ModelSignature
    perturbations: tuple[str, ...] = ()
    batches: tuple[str, ...] = ()
    gene_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    control_pert: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def pert_indices(self, names: list[str]) -> list[int]:
        """Row of each perturbation name in the table stored in the graph."""
        lookup = {name: i for i, name in enumerate(self.perturbations)}
        unknown = [n for n in dict.fromkeys(names) if n not in lookup]
        if unknown:
            raise UnknownLabelError("perturbation", unknown, list(self.perturbations), where=f"model {self.run_id!r}")
        return [lookup[n] for n in names]

    def to_json(self) -> dict:
        return {
            "format": METADATA_FORMAT,
            "model_kind": self.model_kind,
            "run_id": self.run_id,
            "signature": self.signature.to_json(),
            "perturbations": list(self.perturbations),
            "batches": list(self.batches),
            "gene_names": list(self.gene_names),
            "feature_names": list(self.feature_names),
            "control_pert": self.control_pert,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: dict, source: str = METADATA_FILE) -> ModelMetadata:
        if data.get("format") != METADATA_FORMAT:
            raise ArtifactError(
                f"{source}: metadata format {data.get('format')!r} is not supported "
                f"(expected {METADATA_FORMAT}); re-export the model with this version"
            )
        return cls(
            model_kind=data["model_kind"],
            run_id=data["run_id"],
            signature=ModelSignature.from_json(data["signature"]),
            perturbations=tuple(data["perturbations"]),
            batches=tuple(data["batches"]),
            gene_names=tuple(data["gene_names"]),
            feature_names=tuple(data["feature_names"]),
            control_pert=data["control_pert"],
            extra=dict(data.get("extra", {})),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> ModelMetadata:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{path} does not exist; export the model with `state export onnx` first") from None
        except json.JSONDecodeError as err:
            raise ArtifactError(f"{path} is not valid JSON ({err})") from None
        return cls.from_json(data, source=str(path))
