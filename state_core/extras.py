"""Optional dependencies: the library's core runs without them; the part that needs one says which extra
installs it (`pip install 'state-core[<extra>]'`).

    pipelines  kfp, kfp-kubernetes   `state pipeline ...`, components/, pipelines/
    serve      tritonclient[grpc]    `state export triton|rollback`, `state serve ...`, `tx infer --triton_url`
    gcs        google-cloud-storage  gs:// paths
"""

from __future__ import annotations

import importlib
from types import ModuleType

from state_core.errors import MissingExtraError


def require(module: str, extra: str, needed_for: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{needed_for} needs {module.split('.')[0]!r}, which is not installed ({err})\n"
            f"    fix: pip install 'state-core[{extra}]'"
        ) from None
