"""A restricted unpickler for files written by other tools (arc-state's `.pkl`, `.pt`, `.ckpt`).

Only plain containers, numbers, strings, numpy arrays / scalars / dtypes and torch tensors /
storages can be rebuilt; any other class raises `ArtifactError` naming it, before anything runs.
This module also works as a `pickle_module` for `torch.load` (it has `Unpickler` and `load`).

    safe_pickle_load(path)          # plain pickle files
    safe_torch_load(path)           # torch.save files and Lightning checkpoints
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import torch

from state_core.errors import ArtifactError

_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bytearray", "bool"}
    ),
    "collections": frozenset({"OrderedDict", "defaultdict"}),
    "_codecs": frozenset({"encode"}),  # how protocol-2 pickles store bytes (numpy data); str -> bytes only
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "torch._utils": frozenset(
        {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"}
    ),
    "torch": frozenset({"Size", "device"}),
}


def _is_allowed(module: str, name: str) -> bool:
    if name in _ALLOWED.get(module, ()):
        return True
    if module == "numpy.dtypes" and name.endswith("DType"):  # e.g. Int64DType: dtype classes only
        return True
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):  # torch.float32 ...
        return True
    return module == "torch" and name.endswith("Storage")  # typed storages (legacy format)


class Unpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only allow-listed globals."""

    source = "pickle data"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            # tensors pickled with plain pickle embed a torch.save blob; load it restricted as well
            return lambda blob: _restricted_torch_load(io.BytesIO(blob), self.source)
        if not _is_allowed(module, name):
            raise ArtifactError(
                f"{self.source}: refuses to load class {module}.{name}; only plain containers, numbers, strings, "
                f"numpy arrays and torch tensors are accepted (fix: re-save the file with plain data types)"
            )
        return super().find_class(module, name)


def load(file: BinaryIO, **kwargs: Any) -> Any:
    """`pickle.load` with the restricted unpickler (the `pickle_module` protocol)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return load(io.BytesIO(data), **kwargs)


def _named_unpickler(path: Path) -> type[Unpickler]:
    return type("Unpickler", (Unpickler,), {"source": str(path)})


def safe_pickle_load(path: str | Path) -> Any:
    """Load a plain pickle file, refusing any class outside the allow-list."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    with path.open("rb") as f:
        try:
            return _named_unpickler(path)(f).load()
        except (pickle.UnpicklingError, EOFError) as err:
            raise ArtifactError(f"{path}: not a readable pickle file ({err})") from None


class _TorchPickleModule:
    """What `torch.load(pickle_module=...)` needs, with errors that name the file."""

    __name__ = "state_core.models.safe_unpickle"

    def __init__(self, path: Path):
        self.Unpickler = _named_unpickler(path)

    def load(self, file: BinaryIO, **kwargs: Any) -> Any:
        return self.Unpickler(file, **kwargs).load()


def _restricted_torch_load(file: Any, source: str) -> Any:
    # weights_only=False only because our own restricted unpickler replaces torch's
    return torch.load(file, map_location="cpu", weights_only=False, pickle_module=_TorchPickleModule(Path(source)))


def safe_torch_load(path: str | Path) -> Any:
    """torch.load a file (zip or legacy format) on CPU, refusing any class outside the allow-list."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist")
    try:
        return _restricted_torch_load(path, str(path))
    except ArtifactError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ArtifactError(f"{path}: not a readable torch file ({str(err).splitlines()[0]})") from None
