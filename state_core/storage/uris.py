"""Pure string helpers for paths and `gs://` URIs: no I/O here."""

from __future__ import annotations

import re

from state_core.errors import DataError

GLOB_CHARS = frozenset("*?[]{}")
DATA_SUFFIXES = (".h5ad", ".h5")


def is_gcs(uri: str) -> bool:
    """True for a `gs://bucket/...` URI."""
    return str(uri).startswith("gs://")


def split_gcs_uri(uri: str) -> tuple[str, str]:
    """`gs://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, name = str(uri)[len("gs://") :].partition("/")
    if not bucket:
        raise DataError(f"{uri}: not a valid gs:// URI; write gs://<bucket>/<path>")
    return bucket, name


def has_glob(pattern: str) -> bool:
    return any(ch in GLOB_CHARS for ch in pattern)


def is_data_file(name: str) -> bool:
    return name.endswith(DATA_SUFFIXES)


def expand_braces(pattern: str) -> list[str]:
    """Expand shell-style braces: `d/{a,b}/*.h5` -> [`d/a/*.h5`, `d/b/*.h5`]; nests and repeats."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth = 0
    options: list[str] = []
    piece_start = start + 1
    for pos in range(start, len(pattern)):
        ch = pattern[pos]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                options.append(pattern[piece_start:pos])
                head, tail = pattern[:start], pattern[pos + 1 :]
                return [out for opt in options for out in expand_braces(head + opt + tail)]
        elif ch == "," and depth == 1:
            options.append(pattern[piece_start:pos])
            piece_start = pos + 1
    raise DataError(f"{pattern}: unbalanced '{{' in the path pattern; close every brace")


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Regex for a brace-free glob where `*` and `?` do not cross `/` and `**` does."""
    out = []
    pos = 0
    while pos < len(pattern):
        ch = pattern[pos]
        if pattern.startswith("**", pos):
            out.append(".*")
            pos += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", pos + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[pos + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body}]")
                pos = end
        else:
            out.append(re.escape(ch))
        pos += 1
    return re.compile("".join(out) + r"\Z")


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard (used as a listing prefix)."""
    cut = min((pattern.find(ch) for ch in GLOB_CHARS if ch in pattern), default=len(pattern))
    return pattern[:cut]
