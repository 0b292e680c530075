"""Import an original SE model folder (`*.ckpt` or `model.safetensors`, `protein_embeddings.pt`, `config.yaml`).

Every size is read from the tensors (d from `encoder.0.weight`, h from `linear1`, the layer count, o from
`decoder.1.weight`, K from `dataset_encoder.4.weight`, E from the table); only `nhead` and the sentence
settings come from `config.yaml`. The result is our SE model folder in `compat` mode (original sampling
and CLS-count quirk), so imported weights give the original numbers. Nothing is unpickled beyond tensors
and plain containers: `.ckpt` files go through the restricted loader.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from state_core.embed.artifact import InputConvention, SEMeta, save_se_model
from state_core.embed.genes import GeneTable
from state_core.embed.sentences import SentenceSpec
from state_core.errors import ArtifactError
from state_core.models.se import SEConfig, StateEmbeddingModel

log = logging.getLogger(__name__)

TABLE_FILE = "protein_embeddings.pt"
CONFIG_FILE = "config.yaml"
# Keys the clean model does not hold: the frozen table (shipped separately) and the second registration
# of the input projection.
DROPPED = ("pe_embedding.", "gene_embedding_layer.")
# The fallback (nn.TransformerEncoder) parameter names -> the fused-QKV layer's names (same layout).
FALLBACK_RENAMES = (
    (re.compile(r"\.self_attn\.in_proj_(weight|bias)$"), r".qkv_proj.\1"),
    (re.compile(r"\.self_attn\.out_proj\.(weight|bias)$"), r".out_proj.\1"),
)


def pick_checkpoint(folder: Path, name: str | None) -> Path:
    """The checkpoint to import; with several candidates the user must choose (the original took any)."""
    if name:
        path = folder / name if not Path(name).is_absolute() else Path(name)
        if not path.is_file():
            raise ArtifactError(f"checkpoint {path} does not exist; choose one of {candidates(folder)}")
        return path
    found = candidates(folder)
    if len(found) != 1:
        what = "no checkpoint" if not found else f"{len(found)} checkpoints ({', '.join(found)})"
        raise ArtifactError(f"{folder} holds {what}; pass --checkpoint with the file to import")
    return folder / found[0]


def candidates(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".ckpt", ".safetensors") and p.is_file())


class _Inert:
    """Stands in for a config/collator object pickled into an original checkpoint; runs none of its code."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        return _Inert()


def _inert_reconstructor(cls: type, base: type, state: object) -> _Inert:
    """copyreg's object rebuilder, allowed only for the inert stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _Inert)):
        raise ArtifactError(f"refuses to rebuild {cls!r} from a checkpoint; only config objects are skipped")
    return cls.__new__(cls)


# Classes of these modules appear in the original checkpoints' `hyper_parameters` (the OmegaConf config and
# the collator object). Their contents are not needed, so they are rebuilt as inert stand-ins.
INERT_MODULES = (
    "omegaconf",
    "state.",
    "vci.",
    "typing",
    "lightning.fabric.utilities.data",
    "pytorch_lightning.utilities.parsing",
    "lightning.pytorch.utilities.parsing",
)


def _checkpoint_unpickler(path: Path) -> type:
    from state_core.models import safe_unpickle

    class CheckpointUnpickler(safe_unpickle.Unpickler):
        source = str(path)

        def find_class(self, module: str, name: str):
            if module == "__builtin__":  # protocol-2 pickles (torch.save's default) name builtins this way
                module = "builtins"
            if module.startswith(INERT_MODULES) or module == "state":
                return type(name, (_Inert,), {})
            if (module, name) == ("copyreg", "_reconstructor"):
                return _inert_reconstructor
            return super().find_class(module, name)

    return CheckpointUnpickler


class _PickleModule:
    __name__ = "state_core.embed.se_import"

    def __init__(self, path: Path):
        self.Unpickler = _checkpoint_unpickler(path)

    def load(self, file, **kwargs):
        return self.Unpickler(file, **kwargs).load()


def load_pickled_tensors(path: Path) -> object:
    """Load a torch pickle with the restricted unpickler: tensors and plain containers are rebuilt, config and
    collator objects become inert stand-ins, anything else is refused before it runs."""
    try:
        # weights_only=False only because the restricted unpickler replaces torch's own
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PickleModule(path))
    except ArtifactError:
        raise
    except Exception as err:  # corrupt file or an unexpected pickle layout
        raise ArtifactError(
            f"{path}: cannot be loaded safely ({type(err).__name__}: {err}); "
            f"convert it to safetensors where it was made, or report the class it needs"
        ) from err


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    ckpt = load_pickled_tensors(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ArtifactError(f"{path}: no state_dict inside; is this an SE checkpoint?")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def clean_state_dict(state: dict[str, torch.Tensor], where: Path) -> dict[str, torch.Tensor]:
    state = {k.removeprefix("model."): v for k, v in state.items()}
    for prefix in ("encoder.0.weight", "encoder.0.bias"):
        twin = prefix.replace("encoder.", "gene_embedding_layer.", 1)
        if twin in state and not torch.equal(state[twin], state[prefix]):
            raise ArtifactError(
                f"{where}: {twin} differs from {prefix}; the two projections are expected to be one module"
            )
    out = {}
    for key, value in state.items():
        if key.startswith(DROPPED):
            continue
        for pattern, repl in FALLBACK_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def config_from_tensors(state: dict[str, torch.Tensor], nhead: int, where: Path) -> SEConfig:
    need = ("encoder.0.weight", "decoder.1.weight", "transformer_encoder.layers.0.linear1.weight", "dataset_token")
    missing = [k for k in need if k not in state]
    if missing:
        raise ArtifactError(f"{where}: missing {missing}; this is not an SE checkpoint with dataset correction")
    d, e = state["encoder.0.weight"].shape
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(r"transformer_encoder\.layers\.(\d+)\.", k))}
    k = state["dataset_encoder.4.weight"].shape[0] if "dataset_encoder.4.weight" in state else 1
    return SEConfig(
        token_dim=int(e),
        d_model=int(d),
        d_hid=int(state["transformer_encoder.layers.0.linear1.weight"].shape[0]),
        nhead=nhead,
        nlayers=len(layer_ids),
        output_dim=int(state["decoder.1.weight"].shape[0]),
        dropout=0.0,
        num_datasets=int(k),
    )


def read_original_config(path: Path) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the original folder's config.yaml gives nhead and pad_length")
    data = yaml.safe_load(path.read_text()) or {}
    model, dataset = data.get("model", {}) or {}, data.get("dataset", {}) or {}
    if "nhead" not in model:
        raise ArtifactError(f"{path}: model.nhead is missing; it cannot be read from the weights")
    return {
        "nhead": int(model["nhead"]),
        "pad_length": int(dataset.get("pad_length", 2048)),
        "cls_token_idx": int(dataset.get("cls_token_idx", 3)),
    }


def load_table(path: Path) -> GeneTable:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; SE needs the per-gene table (HF arcinstitute/SE-600M/{TABLE_FILE})")
    table = load_pickled_tensors(path)
    if not isinstance(table, dict) or not table:
        raise ArtifactError(f"{path}: expected a dict gene symbol -> vector")
    names = [str(n) for n in table]  # insertion order = vocabulary order in the original
    return GeneTable(names=names, vectors=torch.stack([torch.as_tensor(v).float().reshape(-1) for v in table.values()]))


def import_original_se(folder: str | Path, out_dir: str | Path, checkpoint: str | None = None) -> Path:
    """Convert an original SE folder to our SE model folder at `out_dir`; return it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"{folder} is not a folder; pass the downloaded SE model folder (e.g. SE-600M)")
    ckpt = pick_checkpoint(folder, checkpoint)
    settings = read_original_config(folder / CONFIG_FILE)
    table = load_table(folder / TABLE_FILE)
    state = clean_state_dict(load_state_dict(ckpt), ckpt)
    cfg = config_from_tensors(state, settings["nhead"], ckpt)
    if cfg.token_dim != table.token_dim:
        raise ArtifactError(
            f"{ckpt}: encoder expects {cfg.token_dim}-d gene vectors but {TABLE_FILE} has {table.token_dim}"
        )
    model = StateEmbeddingModel(cfg, table.vectors)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ArtifactError(f"{ckpt}: weights lack {result.missing_keys[:8]}; not a supported SE checkpoint")
    if result.unexpected_keys:
        log.warning(
            "ignoring %d unknown tensors in %s: %s", len(result.unexpected_keys), ckpt, result.unexpected_keys[:5]
        )
    meta = SEMeta(
        model_id=f"{folder.name}/{ckpt.name}",
        config=cfg,
        sentence=SentenceSpec(pad_length=settings["pad_length"], compat=True, cls_token_idx=settings["cls_token_idx"]),
        convention=InputConvention(input_kind="raw", target_sum=None),
        vocab_digest=table.digest(),
    )
    return save_se_model(out_dir, model.eval(), meta, table)
