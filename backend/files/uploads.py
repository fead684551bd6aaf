"""Creating and updating records with files: a multipart/form-data body streamed to storage.

The body's parts are read as they arrive (backend/files/multipart.py):

- ``data``: the record's fields as JSON, the same object a JSON create or update sends (on an
  update it may list the names a file field keeps: the others are removed);
- any other part without a filename: one field's value as text (repeat a text list's part
  for each item); JSON wins nothing over it: naming a field in both is a 422;
- a part with a filename, named after a file field: one file for that field.

Each file is checked from its bytes as they stream: its type sniffed from the first bytes
(415 naming the field when the field does not accept it), its size (413 past the field's
``max_size``), the field's count (422 past ``max_files``). Before its bytes go to storage its
row in ``stored_files`` is committed (unattached); the record's write then marks the rows
attached in the same transaction that puts the names in the record. If anything fails — a
limit, the record's rules, a stale If-Match, the client hanging up — the objects stored for
the request and their rows are deleted before the answer; a crash leaves unattached rows the
sweeper removes (backend/files/cleanup.py). The caller may write the record (404 or 403
otherwise) before any byte is stored: rules are checked first, and again in the transaction.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio
import msgspec
import uuid_utils.compat as uuid_utils
from litestar import Request
from sqlalchemy import delete, select, update

from backend.auth.deps import principal_of
from backend.collections.files import FileField
from backend.collections.reading import Row
from backend.collections.rules import CompiledRules, rule_clause
from backend.collections.schemas import RecordTypes, provided, record_types
from backend.collections.service import RecordService
from backend.collections.spec import Collection
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.errors import Conflict, Forbidden, Invalid, NotFound, Unsupported
from backend.files.models import StoredFile, object_key
from backend.files.multipart import MultipartReader, too_large
from backend.files.names import stored_name
from backend.files.sniff import SNIFF_BYTES, sniff
from backend.files.storage import Storage
from backend.identity import Principal
from backend.inputs import nul_fields
from backend.problems import locate

log = logging.getLogger(__name__)

DATA_PART = "data"


@dataclass
class Staged:
    """One request's upload: whose record, and what it stored so far (rows, names by field)."""

    collection: Collection
    principal: Principal | None
    record_id: UUID
    rows: list[StoredFile] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)


def _field_error(name: str, message: str) -> dict[str, Any]:
    return {"field": name, "message": message, "source": "body"}


class Uploads:
    """``app.state.record_uploads``: the RecordUploads protocol of backend/collections."""

    def __init__(
        self, storage: Storage, settings: Settings, rules: dict[str, CompiledRules]
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.rules = rules
        self._types: dict[str, RecordTypes] = {}

    def _types_of(self, collection: Collection) -> RecordTypes:
        if collection.name not in self._types:
            self._types[collection.name] = record_types(collection)
        return self._types[collection.name]

    async def write(
        self,
        request: Request[Any, Any, Any],
        collection: Collection,
        record_id: UUID | None,
        if_match: str | None,
    ) -> Row:
        principal = await principal_of(request)
        state = request.app.state
        creating = record_id is None
        if record_id is None:
            record_id = uuid_utils.uuid7()
        await self.may_write(state, collection, principal, record_id, creating)
        staged = Staged(collection, principal, record_id)
        try:
            data = await self._receive(request, staged, creating=creating)
            async with owned_session(state.database) as db:
                records = RecordService(db, state.reader, self.settings, state.clock, self.rules)
                if creating:
                    row = await records.create(
                        collection, principal, data, staged.names, record_id=record_id
                    )
                else:
                    row = await records.update(
                        collection, principal, record_id, data, if_match, staged.names
                    )
                await self.attach(db, staged)
            return row
        except BaseException:
            # Shielded: a client that hung up cancels the request, not the clean-up.
            with anyio.CancelScope(shield=True):
                await self.discard(state, staged)
            raise

    async def may_write(
        self,
        state: Any,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        creating: bool,
    ) -> None:
        """Refuse before any byte is stored: a create the rules never admit (admin-only), an
        update of a record hidden (404) or not changeable (403). The transaction checks again."""
        if principal is not None and principal.bypasses_rules:
            return
        compiled = self.rules[collection.name]
        if creating:
            if "create" in compiled.admin_only:
                raise Forbidden(
                    f"You may not create this record in {collection.name}", code="forbidden"
                )
            return
        table = collection.table
        now = state.clock.now()
        rows = await state.reader.rows(
            select(
                table.c.id,
                rule_clause(compiled, "update", principal, now).label("may_update"),
            ).where(table.c.id == record_id, rule_clause(compiled, "view", principal, now))
        )
        if not rows:
            raise NotFound(f"No such record in {collection.name}", code="not_found")
        if not rows[0]["may_update"]:
            raise Forbidden(
                f"You may not update this record in {collection.name}", code="forbidden"
            )

    async def _receive(
        self, request: Request[Any, Any, Any], staged: Staged, *, creating: bool
    ) -> dict[str, Any]:
        """Read the body: store each file part, gather the fields; the fields, checked."""
        collection = staged.collection
        reader = MultipartReader(
            request,
            max_bytes=self.settings.files_max_upload_bytes,
            max_parts=self.settings.files_max_parts,
        )
        fields: dict[str, Any] = {}
        json_data: dict[str, Any] | None = None
        text_bytes = 0
        async for part in reader.parts():
            if part.filename is not None:
                spec = collection.file_fields.get(part.name)
                if spec is None:
                    raise Invalid(
                        f"{part.name!r} is not a file field of {collection.name}"
                        f" ({', '.join(sorted(collection.file_fields))})",
                        errors=[_field_error(part.name, "not a file field")],
                    )
                await self._store(request, staged, part.name, spec, part.filename, reader)
                continue
            text = await reader.text(self.settings.max_body_bytes - text_bytes)
            text_bytes += len(text.encode())
            if part.name == DATA_PART:
                if json_data is not None:
                    raise Invalid("Send the data part once", errors=[_field_error("data", "twice")])
                json_data = self._json_part(text)
            else:
                spec_of = collection.fields.get(part.name)
                if spec_of is not None and spec_of.kind == "text_list":
                    fields.setdefault(part.name, []).append(text)
                elif part.name in fields:
                    raise Invalid(
                        f"{part.name} is given twice",
                        errors=[_field_error(part.name, "given twice")],
                    )
                else:
                    fields[part.name] = text
        both = sorted(set(fields) & set(json_data or {}))
        if both:
            raise Invalid(
                "A field is given both in the data part and as a form field",
                errors=[_field_error(name, "given twice") for name in both],
            )
        return self._checked(fields, json_data or {}, collection, creating=creating)

    @staticmethod
    def _json_part(text: str) -> dict[str, Any]:
        try:
            value = msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise Invalid(
                "The data part is not JSON", errors=[_field_error("data", "not JSON")]
            ) from None
        if not isinstance(value, dict):
            raise Invalid(
                "The data part is a JSON object of the record's fields",
                errors=[_field_error("data", "not an object")],
            )
        return value

    def _checked(
        self,
        fields: dict[str, Any],
        json_data: dict[str, Any],
        collection: Collection,
        creating: bool,
    ) -> dict[str, Any]:
        """The fields as the JSON route would take them (types, lengths, unknown names): the
        ``data`` part's with JSON's own types, as a JSON body (``0`` is not ``false``), text
        parts read leniently ("true", "12"); 422 naming the field otherwise."""
        raw = {**fields, **json_data}
        nul = list(dict.fromkeys(nul_fields(raw)))
        if nul:
            raise Invalid(
                "Text cannot hold the NUL character (\\u0000); remove it",
                errors=[_field_error(name, "contains a NUL character") for name in nul],
            )
        types = self._types_of(collection)
        try:
            msgspec.convert(json_data, types.update)
            body = msgspec.convert(raw, types.update, strict=False)
        except msgspec.ValidationError as exc:
            where, message = locate(str(exc))
            raise Invalid(message, errors=[_field_error(where or "data", message)]) from None
        values = provided(body)
        if creating:
            named = sorted(set(values) & set(collection.file_fields))
            if named:
                raise Invalid(
                    "A create names no files: send them as parts",
                    errors=[_field_error(name, "files come as parts") for name in named],
                )
            try:
                msgspec.convert(values, types.create, strict=False)
            except msgspec.ValidationError as exc:
                where, message = locate(str(exc))
                raise Invalid(message, errors=[_field_error(where or "data", message)]) from None
        return values

    async def _store(
        self,
        request: Request[Any, Any, Any],
        staged: Staged,
        field_name: str,
        spec: FileField,
        filename: str,
        reader: MultipartReader,
    ) -> None:
        names = staged.names.setdefault(field_name, [])
        if len(names) >= spec.max_files:
            raise Invalid(
                f"{field_name} holds at most {spec.max_files} files",
                errors=[_field_error(field_name, f"more than {spec.max_files} files")],
            )
        name = stored_name(filename, self.settings.files_name_max_chars)
        collection, record_id = staged.collection, staged.record_id
        row = StoredFile(
            collection=collection.name,
            record_id=record_id,
            field=field_name,
            name=name,
            uploaded_by=staged.principal.user_id if staged.principal else None,
        )
        # Committed before the bytes go: no object is ever without its row (the sweeper's).
        async with owned_session(request.app.state.database) as db:
            db.add(row)
        staged.rows.append(row)
        checked = _CheckedStream(reader.data(), spec, field_name)
        stored = await self.storage.put(object_key(collection.name, record_id, name), checked)
        row.size, row.content_type, row.sha256 = stored.size, checked.mime, checked.sha256
        names.append(name)

    async def attach(self, db: Any, staged: Staged) -> None:
        """Mark the request's rows attached, in the record's transaction. A row the sweeper
        took meanwhile (an upload slower than FILES_PENDING_GRACE_SECONDS) fails the write."""
        for row in staged.rows:
            result = await db.execute(
                update(StoredFile)
                .where(StoredFile.id == row.id, StoredFile.attached.is_(False))
                .values(
                    attached=True, size=row.size, content_type=row.content_type, sha256=row.sha256
                )
            )
            if result.rowcount != 1:
                raise Conflict(
                    "An uploaded file was removed before its record was written; send it again",
                    code="upload_expired",
                )

    async def discard(self, state: Any, staged: Staged) -> None:
        """Delete what the request stored (objects, then rows); the sweeper if this fails."""
        if not staged.rows:
            return
        try:
            await self.storage.delete([row.key for row in staged.rows])
            async with owned_session(state.database) as db:
                await db.execute(
                    delete(StoredFile).where(
                        StoredFile.id.in_([row.id for row in staged.rows]),
                        StoredFile.attached.is_(False),
                    )
                )
        except Exception:
            log.exception("could not remove the files of a failed upload; the sweeper will")


class _CheckedStream:
    """A file part's bytes on their way to storage: sniffed, counted and hashed as they pass;
    raising stops the write (nothing is stored)."""

    def __init__(self, chunks: AsyncIterator[bytes], spec: FileField, field_name: str) -> None:
        self._chunks = chunks
        self._spec = spec
        self._field = field_name
        self._hash = hashlib.sha256()
        self.mime = ""
        self.sha256 = ""

    def _check_type(self, head: bytes) -> None:
        self.mime = sniff(head)
        if not self._spec.accepts(self.mime):
            raise Unsupported(
                f"{self._field} does not take {self.mime} files ({', '.join(self._spec.mime)})",
                errors=[_field_error(self._field, f"{self.mime} is not accepted")],
            )

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[bytes]:
        head = bytearray()
        size = 0
        async for chunk in self._chunks:
            size += len(chunk)
            if size > self._spec.max_size:
                raise too_large(
                    f"{self._field} takes files of at most {self._spec.max_size} bytes",
                    self._field,
                )
            self._hash.update(chunk)
            if not self.mime:
                head += chunk
                if len(head) < SNIFF_BYTES:
                    continue
                self._check_type(bytes(head))
                chunk, head = bytes(head), bytearray()
            yield chunk
        if size == 0:
            raise Invalid(
                f"{self._field}: a file is empty", errors=[_field_error(self._field, "empty")]
            )
        if not self.mime:
            self._check_type(bytes(head))
            yield bytes(head)
        self.sha256 = self._hash.hexdigest()
