"""The SE model folder: everything `emb transform` and `emb export` need, in safe formats.

    <folder>/se_config.json            model sizes, sentence spec, input convention, model id
    <folder>/model.safetensors         weights (no gene table)
    <folder>/gene_vocab.json           ordered gene symbols (row i of the table)
    <folder>/gene_embeddings.safetensors   gene symbol -> vector

The folder is written under a temporary name and renamed, so a failure leaves nothing half written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from state_core.embed.genes import GeneTable, load_gene_table, load_vocab, save_gene_table, save_vocab
from state_core.embed.sentences import SentenceSpec
from state_core.errors import ArtifactError
from state_core.models.se import SEConfig, StateEmbeddingModel

FORMAT = "state-se/1"
CONFIG_FILE = "se_config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "gene_vocab.json"
TABLE_FILE = "gene_embeddings.safetensors"


@dataclass(frozen=True)
class InputConvention:
    """How expression was turned into log values in training; transform repeats it."""

    input_kind: str = "raw"  # what the training files held
    target_sum: float | None = None  # raw counts scaled to this library size before log1p (None: no scaling)


@dataclass(frozen=True)
class SEMeta:
    model_id: str
    config: SEConfig
    sentence: SentenceSpec
    convention: InputConvention
    vocab_digest: str

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "model_id": self.model_id,
            "model": self.config.to_dict(),
            "sentence": asdict(self.sentence),
            "input": asdict(self.convention),
            "vocab_digest": self.vocab_digest,
        }

    @staticmethod
    def from_json(data: dict, where: str) -> SEMeta:
        if data.get("format") != FORMAT:
            raise ArtifactError(
                f"{where}: format {data.get('format')!r} is not {FORMAT!r}; is this an SE model folder?"
            )
        try:
            return SEMeta(
                model_id=str(data["model_id"]),
                config=SEConfig(**data["model"]),
                sentence=SentenceSpec(**data["sentence"]),
                convention=InputConvention(**data["input"]),
                vocab_digest=str(data["vocab_digest"]),
            )
        except (KeyError, TypeError) as err:
            raise ArtifactError(
                f"{where}: malformed SE config ({err}); re-create the folder with `state emb fit`"
            ) from err


@dataclass
class LoadedSE:
    model: StateEmbeddingModel
    meta: SEMeta
    vocab: list[str]


def save_se_model(folder: str | Path, model: StateEmbeddingModel, meta: SEMeta, table: GeneTable) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
    save_vocab(tmp / VOCAB_FILE, table.names)
    save_gene_table(tmp / TABLE_FILE, table)
    (tmp / CONFIG_FILE).write_text(json.dumps(meta.to_json(), indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def load_se_model(folder: str | Path, device: str = "cpu") -> LoadedSE:
    folder = Path(folder)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE, TABLE_FILE) if not (folder / f).is_file()]
    if missing:
        hint = (
            " (this looks like an original SE folder: run `state emb import` first)"
            if list(folder.glob("*.ckpt"))
            else ""
        )
        raise ArtifactError(
            f"{folder} is not an SE model folder: missing {', '.join(missing)}{hint}; pass the folder written by "
            f"`state emb fit` (<output_dir>/model) or `state emb import`"
        )
    meta = SEMeta.from_json(json.loads((folder / CONFIG_FILE).read_text()), str(folder / CONFIG_FILE))
    vocab = load_vocab(folder / VOCAB_FILE)
    table = load_gene_table(folder / TABLE_FILE, order=vocab)
    if table.digest() != meta.vocab_digest:
        raise ArtifactError(
            f"{folder}: gene vocabulary does not match the digest in {CONFIG_FILE}; the folder was edited"
        )
    model = StateEmbeddingModel(meta.config, table.vectors)
    state = load_file(str(folder / WEIGHTS_FILE))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ArtifactError(
            f"{folder / WEIGHTS_FILE}: weights do not fit the config (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    return LoadedSE(model=model.to(device).eval(), meta=meta, vocab=vocab)


def model_table(model: StateEmbeddingModel, names: list[str]) -> GeneTable:
    return GeneTable(names=list(names), vectors=model.gene_table.detach().cpu().float())


def weights_digest(model: StateEmbeddingModel) -> str:
    """A short id for a set of weights: hash of every tensor's name and sum."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(torch.as_tensor(tensor.float().sum().item()).numpy().tobytes())
    return h.hexdigest()[:12]
