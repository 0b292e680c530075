"""Vocabularies of a run: which perturbations, cell types, batches and features a model knows, in order.

A `Vocab` is built once from the labels OBSERVED in a split manifest (all splits), sorted so that the
indices do not depend on file order, and saved as `vocab.json` next to the model. Inference reloads it
instead of rescanning data, so an index always means the same label. `load_perturbation_features` turns a
safetensors file of {name: vector} into a table in vocabulary order; a missing name is an error, not a
silent zero vector (the cell-load#59 bug).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np

from state_core.atomic import atomic_write_text
from state_core.errors import DataError, UnknownLabelError

VOCAB_FORMAT = "state_core.vocab"
VOCAB_VERSION = 1
LabelKind = Literal["perturbation", "cell_type", "batch", "feature", "gene"]
_KIND_FIELDS: dict[str, str] = {
    "perturbation": "perturbations",
    "cell_type": "cell_types",
    "batch": "batches",
    "feature": "feature_names",
    "gene": "gene_names",
}


@dataclass(frozen=True)
class Vocab:
    """Ordered label lists of one run plus the data settings that give them meaning."""

    perturbations: tuple[str, ...]  # sorted, control included
    cell_types: tuple[str, ...]
    batches: tuple[str, ...]
    feature_names: tuple[str, ...]  # input features: HVG names, var names or `<embed_key>_<i>`
    gene_names: tuple[str, ...]  # gene-space target names (empty when output_space == "embedding")
    control_pert: str
    pert_col: str
    cell_type_key: str
    batch_col: str | None
    embed_key: str  # "X" means the X matrix
    output_space: str  # gene | all | embedding
    pert_feature_dim: int  # P: one-hot width or the width of the perturbation features file

    def __post_init__(self) -> None:
        for kind, name in _KIND_FIELDS.items():
            values = getattr(self, name)
            object.__setattr__(self, name, tuple(str(v) for v in values))
            if len(set(self.__dict__[name])) != len(values):
                raise DataError(f"vocabulary: duplicate {kind} names in {name}; each label must appear once")
        if self.control_pert not in self.perturbations:
            raise DataError(
                f"vocabulary: control_pert {self.control_pert!r} is not among the perturbations; "
                "check control_pert matches the label used in the data"
            )

    @property
    def control_index(self) -> int:
        return self.perturbations.index(self.control_pert)

    @cached_property
    def _lookup(self) -> dict[str, dict[str, int]]:
        return {kind: {n: i for i, n in enumerate(getattr(self, f))} for kind, f in _KIND_FIELDS.items()}

    def names(self, kind: LabelKind) -> tuple[str, ...]:
        if kind not in _KIND_FIELDS:
            raise ValueError(f"unknown vocabulary kind {kind!r}; use one of {sorted(_KIND_FIELDS)}")
        return getattr(self, _KIND_FIELDS[kind])

    def index(self, kind: LabelKind, names: Iterable[str] | np.ndarray, where: str = "") -> np.ndarray:
        """Indices of `names` in the `kind` list (int64, same order). Unknown names -> UnknownLabelError."""
        known = self.names(kind)
        table = self._lookup[kind]
        values = np.asarray(list(names) if not isinstance(names, np.ndarray) else names).astype(str)
        uniq, inverse = np.unique(values, return_inverse=True)
        missing = [u for u in uniq.tolist() if u not in table]
        if missing:
            raise UnknownLabelError(kind.replace("_", " "), missing, list(known), where=where)
        uniq_idx = np.array([table[u] for u in uniq.tolist()], dtype=np.int64)
        return uniq_idx[inverse.reshape(-1)]

    # Alias under the name used in docs/design.md.
    index_of = index

    def to_json_dict(self) -> dict:
        body = asdict(self)
        for name in _KIND_FIELDS.values():
            body[name] = list(body[name])
        return {"format": VOCAB_FORMAT, "version": VOCAB_VERSION, **body}

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temp file in the same folder, then rename)."""
        return atomic_write_text(path, json.dumps(self.to_json_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        source = Path(path)
        try:
            body = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise DataError(
                f"{source}: vocabulary file not found; it is written as vocab.json in the run folder"
            ) from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{source}: not valid JSON ({err}); re-create it by re-running training") from None
        except OSError as err:
            raise DataError(f"{source}: cannot read the vocabulary ({err.strerror or err})") from None
        if not isinstance(body, dict) or body.get("format") != VOCAB_FORMAT:
            body = body if isinstance(body, dict) else {}
            raise DataError(f"{source}: not a state_core vocabulary (format={body.get('format')!r})")
        if body.get("version") != VOCAB_VERSION:
            raise DataError(
                f"{source}: vocabulary version {body.get('version')!r} is not supported "
                f"(this state_core reads version {VOCAB_VERSION})"
            )
        body = {k: v for k, v in body.items() if k not in ("format", "version")}
        try:
            return cls(**body)
        except TypeError as err:
            raise DataError(f"{source}: vocabulary has missing or unexpected keys ({err})") from err


def merge_observed(observed: Iterable[str], base: Sequence[str] | None, kind: str, allow_new: bool) -> tuple[str, ...]:
    """Sorted observed labels, or `base` (frozen order) with unseen labels appended sorted if allowed."""
    seen = sorted(set(map(str, observed)))
    if base is None:
        return tuple(seen)
    known = set(base)
    new = [s for s in seen if s not in known]
    if new and not allow_new:
        raise UnknownLabelError(kind, new, list(base), where="the data (vocabulary is frozen)")
    return tuple(base) + tuple(new)


# ---------------------------------------------------------------------------------------------------
# Perturbation features


def one_hot_features(n_perturbations: int) -> np.ndarray:
    """Default perturbation features: identity rows, float32 [n_pert, n_pert]."""
    return np.eye(n_perturbations, dtype=np.float32)


def load_perturbation_features(
    path: str | os.PathLike, vocab_perts: Sequence[str], control_pert: str | None = None
) -> np.ndarray:
    """Feature table [n_pert, P] (float32) in `vocab_perts` order from a safetensors {name: 1-D vector} file.

    Every perturbation must have a vector, otherwise DataError lists the missing ones (no silent zeros).
    The control is the one exception: if the file lacks it, it gets a zero vector, which keeps "no
    perturbation" at the origin of the feature space. Names in the file but not in the data are ignored.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    source = Path(path)
    if not source.is_file():
        raise DataError(f"{source}: perturbation features file not found; pass a safetensors file {{name: vector}}")
    try:
        table = load_file(str(source))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{source}: cannot read as safetensors ({err}); save with safetensors.numpy.save_file") from err
    bad_shape = sorted(k for k, v in table.items() if v.ndim != 1)
    if bad_shape:
        raise DataError(f"{source}: entries must be 1-D vectors; these are not: {bad_shape[:10]}")
    widths = {int(v.shape[0]) for v in table.values()}
    if len(widths) != 1:
        raise DataError(f"{source}: vectors have different lengths {sorted(widths)}; all must have the same length")
    (width,) = widths
    missing = [p for p in vocab_perts if p not in table and p != control_pert]
    if missing:
        shown = ", ".join(map(repr, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise DataError(
            f"{source}: {len(missing)} perturbation{'s' if len(missing) != 1 else ''} of the data have no feature "
            f"vector: {shown}\n    fix: add vectors for them to the file, or drop those cells"
        )
    out = np.zeros((len(vocab_perts), width), dtype=np.float32)  # [n_pert, P]
    for i, name in enumerate(vocab_perts):
        if name in table:
            out[i] = table[name].astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------------
# Building a vocabulary from a split manifest


def _used_rows(entry) -> np.ndarray:  # noqa: ANN001 - a splits.ManifestFile
    parts = [np.asarray(getattr(entry, s), dtype=np.int64) for s in ("train", "val", "test")]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def observed_labels(path: str, column: str, rows: np.ndarray) -> list[str]:
    """Distinct labels of obs `column` over `rows`; a missing value in a used row is a DataError."""
    from state_core.data.h5ad import read_obs_labels

    labels = read_obs_labels(path, column)
    codes = np.unique(labels.codes[rows])
    if codes.size and codes[0] < 0:
        n_missing = int(np.sum(labels.codes[rows] < 0))
        raise DataError(f"{path}: obs column {column!r} has {n_missing} empty values in used rows; fill or drop them")
    return labels.categories[codes].tolist()


def _read_hvg_names(path: str) -> list[str] | None:
    """Ordered HVG names: `uns/hvg_names`, else var names where `var/highly_variable`; None if neither."""
    import h5py

    from state_core.data.h5ad import read_var_names

    with h5py.File(path, "r") as file:
        if "uns/hvg_names" in file:
            raw = file["uns/hvg_names"]
            return [str(v) for v in (raw.asstr()[()] if h5py.check_string_dtype(raw.dtype) else raw[()]).tolist()]
        has_flag = "var/highly_variable" in file
    if not has_flag:
        return None
    names = np.asarray(read_var_names(path))
    flag = np.asarray(read_var_names(path, "highly_variable")) == "True"
    return names[flag].tolist()


def _feature_width(path: str, key: str) -> int:
    from state_core.data.features import open_features

    return int(open_features(path, key).shape[1])


def feature_names_of(path: str, key: str) -> list[str]:
    """Column names of feature matrix `key` ("X" or an obsm key) of one file."""
    from state_core.data.h5ad import read_var_names

    if key == "X":
        return read_var_names(path)
    if key == "X_hvg":
        names = _read_hvg_names(path)
        if names is not None and len(names) == _feature_width(path, key):
            return names
    return [f"{key}_{i}" for i in range(_feature_width(path, key))]


def gene_target_key(embed_key: str, output_space: str) -> str | None:
    """Where gene-space targets come from (st_model.md section 3); None = no separate gene target."""
    if output_space == "embedding":
        return None
    if output_space == "all":
        return None if embed_key == "X" else "X"
    if output_space == "gene":
        return None if embed_key in ("X_hvg", "X") else "X_hvg"
    raise DataError(f"output_space {output_space!r} is not one of gene, all, embedding")


def _same_in_every_file(paths: Sequence[str], read, what: str) -> list[str]:  # noqa: ANN001
    first = read(paths[0])
    for other in paths[1:]:
        if read(other) != first:
            raise DataError(
                f"{what} of {other} differ from those of {paths[0]}; every file must have the same features "
                "in the same order (re-run preprocessing with one gene list)"
            )
    return first


def build_vocab(
    manifest,  # noqa: ANN001 - state_core.data.splits.SplitManifest
    *,
    pert_col: str,
    cell_type_key: str,
    batch_col: str | None,
    control_pert: str,
    embed_key: str = "X_hvg",
    output_space: str = "gene",
    perturbation_features_file: str | None = None,
    base: Vocab | None = None,
    allow_new_labels: bool = False,
) -> Vocab:
    """Vocabulary of the labels observed in the manifest's rows (all splits), sorted.

    With `base`, its label order is kept (indices stay valid for an existing model); labels the base lacks
    are an UnknownLabelError unless `allow_new_labels`, which appends them sorted at the end.
    """
    embed_key = "X" if embed_key in (None, "", "X") else embed_key
    perts: set[str] = set()
    cell_types: set[str] = set()
    batches: set[str] = set()
    paths = [str(f.path) for f in manifest.files]
    if not paths:
        raise DataError("split manifest lists no files; check the dataset paths of the experiment")
    for entry in manifest.files:
        rows = _used_rows(entry)
        perts.update(observed_labels(str(entry.path), pert_col, rows))
        cell_types.update(observed_labels(str(entry.path), cell_type_key, rows))
        if batch_col:
            batches.update(observed_labels(str(entry.path), batch_col, rows))
    if control_pert not in perts:
        raise DataError(
            f"control_pert {control_pert!r} does not occur in obs column {pert_col!r} of any used row; "
            "set control_pert to the control label of the data"
        )
    perturbations = merge_observed(perts, base.perturbations if base else None, "perturbation", allow_new_labels)
    feature_names = _same_in_every_file(paths, lambda p: feature_names_of(p, embed_key), f"{embed_key} columns")
    gene_key = gene_target_key(embed_key, output_space)
    if output_space == "embedding":
        gene_names: list[str] = []
    elif gene_key is None:  # the inputs are already the gene space
        gene_names = feature_names
    else:
        gene_names = _same_in_every_file(paths, lambda p: feature_names_of(p, gene_key), f"{gene_key} columns")
    if perturbation_features_file:
        pert_dim = int(load_perturbation_features(perturbation_features_file, perturbations, control_pert).shape[1])
    else:
        pert_dim = len(perturbations)
    return Vocab(
        perturbations=perturbations,
        cell_types=merge_observed(cell_types, base.cell_types if base else None, "cell type", allow_new_labels),
        batches=merge_observed(batches or {""}, base.batches if base else None, "batch", allow_new_labels),
        feature_names=tuple(feature_names),
        gene_names=tuple(gene_names),
        control_pert=control_pert,
        pert_col=pert_col,
        cell_type_key=cell_type_key,
        batch_col=batch_col,
        embed_key=embed_key,
        output_space=output_space,
        pert_feature_dim=pert_dim,
    )
