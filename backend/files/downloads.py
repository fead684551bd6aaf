"""Reading a record's file: which file a URL names, whether the caller may read it, and the
bytes (a ``Range`` of them) from storage.

A file of a protected field is read under the record's view rule, as the caller (bearer, or
a file token's user): 404 when they may not see the record, as for the record itself. A file
of a field that is not protected is served to anyone holding its URL (its name carries a
random suffix), as long as the record still holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from backend.collections.reads import Reader
from backend.collections.rules import CompiledRules, rule_clause
from backend.collections.spec import CollectionRegistry
from backend.errors import NotFound
from backend.files.models import StoredFile, object_key
from backend.files.names import looks_stored
from backend.identity import Principal
from backend.lib.clock import Clock

# Shown in the browser (Content-Disposition: inline); anything else is a download, so a file
# that a browser would run (HTML, SVG, XML) never runs on the API's origin.
INLINE_TYPES = frozenset(
    {
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "text/plain",
    }
)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class FileToRead:
    key: str
    name: str
    field: str
    content_type: str
    size: int
    etag: str
    protected: bool


def _not_found() -> NotFound:
    return NotFound("No such file", code="not_found")


class FileReads:
    def __init__(
        self,
        reader: Reader,
        registry: CollectionRegistry,
        rules: dict[str, CompiledRules],
        clock: Clock,
    ) -> None:
        self.reader = reader
        self.registry = registry
        self.rules = rules
        self.clock = clock

    async def locate(
        self, collection_name: str, record_id: UUID, name: str, principal: Principal | None
    ) -> FileToRead:
        """The file, if the record holds it and the caller may read it; 404 otherwise."""
        collection = self.registry.get(collection_name)
        if collection is None or not collection.file_fields or not looks_stored(name):
            raise _not_found()
        table = collection.table
        view = rule_clause(self.rules[collection.name], "view", principal, self.clock.now())
        columns = [table.c[field] for field in collection.file_fields]
        found = await self.reader.rows(
            select(*columns, view.label("visible")).where(table.c.id == record_id)
        )
        if not found:
            raise _not_found()
        row = found[0]
        field = next((f for f in collection.file_fields if name in (row[f] or [])), None)
        if field is None:
            raise _not_found()
        protected = collection.file_fields[field].protected
        if protected and not row["visible"]:
            raise _not_found()
        ledger = StoredFile.__table__.c
        stored = await self.reader.rows(
            select(ledger.content_type, ledger.size, ledger.sha256).where(
                ledger.collection == collection.name,
                ledger.record_id == record_id,
                ledger.name == name,
                ledger.attached.is_(True),
            )
        )
        if not stored:
            raise _not_found()
        return FileToRead(
            key=object_key(collection.name, record_id, name),
            name=name,
            field=field,
            content_type=stored[0]["content_type"] or "application/octet-stream",
            size=int(stored[0]["size"]),
            etag=f'"{stored[0]["sha256"]}"',
            protected=protected,
        )


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range: bytes=…`` as (first, last) inclusive; None for the whole file (no header, or
    one this does not serve: several ranges, another unit). ValueError when unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise ValueError("empty suffix")
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise ValueError("beyond the end")
    return start, end
