"""The name a stored file gets: the client's name made safe, with a random suffix that keeps
names unique within a record and unguessable in URLs."""

from __future__ import annotations

import re
import secrets
import unicodedata
from pathlib import PurePosixPath

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_EXTENSION = re.compile(r"[^A-Za-z0-9]+")
_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
SUFFIX_CHARS = 10
MAX_EXTENSION_CHARS = 10


def stored_name(filename: str, max_chars: int) -> str:
    """``"../My Report (final).PDF"`` → ``"My_Report_final_k3x9q2m1za.pdf"``: no path, only
    ASCII letters, digits, ``_`` and ``-`` before one extension, at most ``max_chars`` long."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    stem, dot, extension = base.rpartition(".")
    if not dot:
        stem, extension = base, ""
    stem = _UNSAFE.sub("_", stem).strip("_-") or "file"
    extension = _EXTENSION.sub("", extension).lower()[:MAX_EXTENSION_CHARS]
    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_CHARS))
    tail = f"_{suffix}" + (f".{extension}" if extension else "")
    return stem[: max(1, max_chars - len(tail))] + tail


def looks_stored(name: str) -> bool:
    """Whether ``name`` could be one ``stored_name`` made (a download's path, checked before
    any query)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+_[a-z0-9]{10}(\.[a-z0-9]{1,10})?", name))
