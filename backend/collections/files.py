"""File fields, declared on a collection's model like any column:

    attachments: Mapped[list[str]] = file_field(
        max_size="20MB", mime=["application/pdf", "image/*"], max_files=10,
        thumbs=["100x100", "640x0"], protected=True,
    )

The column holds the names of the record's files (``text[]``); their bytes live in storage
(backend/files) under ``<collection>/<record id>/<name>``. A file belongs to its record: the
view rule governs reading it (protected fields; public ones are served to anyone holding the
URL), the update rule adding and removing, and deleting the record deletes its files.
docs/files.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Text
from sqlalchemy.orm import mapped_column

# Where a file field's declaration rides on its column (Column.info).
FILE_FIELD_INFO = "litebase_file_field"

_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KB|MB|GB)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_THUMB = re.compile(r"^([0-9]{1,4})x([0-9]{1,4})$")
_MIME = re.compile(r"^[a-z0-9][a-z0-9.+-]*/(\*|[a-z0-9][a-z0-9.+-]*)$")


def parse_size(size: str | int) -> int:
    """``"20MB"`` → bytes (KB, MB, GB are powers of 1024; a bare number is bytes)."""
    if isinstance(size, int):
        if size < 1:
            raise ValueError("a file size is at least 1 byte")
        return size
    match = _SIZE.match(size)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"{size!r} is not a size like 500KB, 20MB or 1GB")
    return int(match.group(1)) * _UNITS[(match.group(2) or "B").upper()]


def thumb_box(size: str) -> tuple[int, int]:
    """``"100x100"`` → (100, 100); a 0 lets that side follow the image's proportions."""
    match = _THUMB.match(size)
    if match is None or size == "0x0" or (int(match.group(1)), int(match.group(2))) == (0, 0):
        raise ValueError(f"thumb {size!r} is not WIDTHxHEIGHT (one of them may be 0)")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class FileField:
    """What a file field accepts. ``mime`` patterns (``image/*``) are matched against the type
    sniffed from the bytes; empty accepts any type."""

    max_size: int
    mime: tuple[str, ...]
    max_files: int
    thumbs: tuple[str, ...]
    protected: bool

    def accepts(self, mime: str) -> bool:
        if not self.mime:
            return True
        family = mime.split("/", 1)[0] + "/*"
        return mime in self.mime or family in self.mime


def file_field(
    *,
    max_size: str | int = "5MB",
    mime: list[str] | tuple[str, ...] = (),
    max_files: int = 1,
    thumbs: list[str] | tuple[str, ...] = (),
    protected: bool = False,
) -> Any:
    """A ``text[]`` column of file names, with what the field accepts (see the module)."""
    wrong_mime = [m for m in mime if not _MIME.match(m)]
    if wrong_mime:
        raise ValueError(f"file_field: not MIME types: {', '.join(wrong_mime)}")
    if max_files < 1:
        raise ValueError("file_field: max_files is at least 1")
    for size in thumbs:
        thumb_box(size)
    spec = FileField(
        max_size=parse_size(max_size),
        mime=tuple(m.lower() for m in mime),
        max_files=max_files,
        thumbs=tuple(thumbs),
        protected=protected,
    )
    return mapped_column(
        ARRAY(Text), default=list, server_default="{}", info={FILE_FIELD_INFO: spec}
    )
