"""Cheap checks the commands run on their inputs before any work starts, so that a bad file is one clear
error naming it (and nothing is written), not a traceback or a half-made output folder."""

from __future__ import annotations

from pathlib import Path

from state_core.errors import DataError


def require_text_file(path: str | Path, flag: str) -> None:
    """A config/CSV input must be a readable UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        return  # the command's own reader says "not found" with its usual hint
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{flag} {path}: is not a text file (not UTF-8); check the path") from None
    except OSError as err:
        raise DataError(f"{flag} {path}: cannot be read ({err.strerror or err})") from None


def _is_h5ad(path: str | Path) -> bool:
    return Path(path).suffix in (".h5ad", ".h5") and Path(path).is_file()


def require_finite(path: str | Path, key: str = "X") -> None:
    """NaN/Inf in a matrix is an error naming the file, key and count (results would silently be NaN)."""
    from state_core.data.features import nonfinite_message

    if not _is_h5ad(path):
        return
    try:
        message = nonfinite_message(path, key)
    except DataError:
        return  # unreadable or another layout: the command's own reader reports it
    if message:
        raise DataError(message)


def require_label(path: str | Path, column: str, label: str, flag: str) -> None:
    """obs `column` of an h5ad input must exist and contain `label` (e.g. the control)."""
    from state_core.data.h5ad import read_obs_labels

    if not _is_h5ad(path):
        return
    try:
        labels = read_obs_labels(path, column)
    except DataError:
        return  # missing column or unreadable: the command's own reader reports it
    if labels.code_of(label) < 0 or not (labels.codes == labels.code_of(label)).any():
        shown = ", ".join(map(repr, labels.categories[:10].tolist())) + (" ..." if len(labels.categories) > 10 else "")
        raise DataError(
            f"{path}: no cell has {label!r} in obs[{column!r}] (labels: {shown}); fix: pass the right {flag}"
        )
