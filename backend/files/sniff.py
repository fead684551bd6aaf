"""A file's type, from its first bytes (puremagic's signatures), never from what the client
says: the type a field's ``mime`` is checked against and a download is answered with."""

from __future__ import annotations

import puremagic

# How much of a file is read before its type is decided (signatures sit in the first bytes).
SNIFF_BYTES = 8192
OCTET_STREAM = "application/octet-stream"
TEXT = "text/plain"


def sniff(head: bytes) -> str:
    """The MIME type of a file that starts with ``head``: the best signature match; else
    ``text/plain`` for UTF-8 text without NULs; else ``application/octet-stream``."""
    if not head:
        return OCTET_STREAM
    try:
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        matches = []
    for match in matches:
        if match.mime_type:
            return str(match.mime_type).lower()
    return TEXT if _is_text(head) else OCTET_STREAM


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The head may end inside a character: a cut at the very end is still text.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
