"""What an API key may do: its scopes (`read`, `write`, `keys`) and its collection allow-list.

Sessions (access tokens) are not scoped: a signed-in person may do whatever their role and the
collection rules allow. A key narrows that:

- ``read``: GET (and HEAD/OPTIONS), plus the read-only POSTs: search and ask;
- ``write``: everything else (create, update, delete, jobs, model calls, realtime broadcast);
- ``keys``: may create API keys, never wider than itself;
- ``collections``: when set, only these collections' routes, files and realtime channels.
"""

from __future__ import annotations

import re
from collections.abc import Collection as Names
from typing import Final, Literal

Scope = Literal["read", "write", "keys"]
DEFAULT_SCOPES: Final[tuple[Scope, ...]] = ("read", "write")

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ_ONLY_POST = re.compile(r"^/collections/[^/]+/(search|ask)/?$")
_COLLECTION_PATH = re.compile(r"^/collections/([^/:]+)")
# A collection's files: /files/{collection}/{record}/{name} (not /files/token, nor a resumable
# upload's /files/uploads/{id}: its collection is checked when it is made).
_FILE_PATH = re.compile(r"^/files/([^/]+)/[^/]+/")


class ScopeError(Exception):
    """The key may not do this; ``code`` says which limit it hit."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


def is_read(method: str, path: str) -> bool:
    return method.upper() in _READ_METHODS or (
        method.upper() == "POST" and _READ_ONLY_POST.match(path) is not None
    )


def may_write(scopes: Names[str] | None) -> bool:
    """Whether a caller of ``scopes`` (None: a session, not a key) may change anything."""
    return scopes is None or "write" in scopes


def check_request(
    scopes: Names[str] | None, collections: Names[str] | None, method: str, path: str
) -> None:
    """Raise ScopeError unless a key of ``scopes`` / ``collections`` may send this request
    (``scopes`` None: not a key, nothing to check)."""
    if scopes is None:
        return
    if not may_write(scopes):
        reading = is_read(method, path)
        if not (reading and "read" in scopes):
            needed = "read" if reading else "write"
            raise ScopeError(f"This API key has no {needed!r} scope", "insufficient_scope")
    match = _COLLECTION_PATH.match(path) or _FILE_PATH.match(path)
    if match and collections is not None and match.group(1) not in collections:
        raise ScopeError(
            f"This API key may not use the collection {match.group(1)!r}", "insufficient_scope"
        )


def check_collection(collections: Names[str] | None, name: str) -> bool:
    """May a key limited to ``collections`` (None: any) use collection ``name``?"""
    return collections is None or name in collections
