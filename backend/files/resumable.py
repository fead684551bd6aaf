"""Resumable uploads (tus 1.0, docs/files.md): a file sent in as many requests as it takes,
finished into a record's file field under the same checks as a multipart upload.

An upload names its target when it is made (collection, record, field, file name) and is the
caller's alone: anyone else gets 404 for it. The record's update rule is asked when it is made
and again when it is finished (in the record's own transaction). Its bytes wait in staging
(backend/files/staging.py); each PATCH appends at the offset the upload has, and one PATCH at a
time holds it (a lease in its row, so a crashed holder lets go). Bytes are checked as they
pass: never past the upload's length, the type sniffed from the first ones (415 naming the
field, and the upload is dropped), the SHA-256 taken as they go when this process saw them all
(else read back from storage at the end). When the last byte is in, the staged bytes become the
file's object, its ledger row is written, and the record's update adds its name: the field's
count, the update rule and the realtime and webhook change are those of any record update.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio
import anyio.to_thread
import uuid_utils.compat as uuid_utils
from sqlalchemy import delete, func, select, text, update

from backend.auth.scopes import check_collection
from backend.collections.files import FileField
from backend.collections.service import RecordService
from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.errors import (
    Conflict,
    Forbidden,
    NotFound,
    TooMany,
    Unauthenticated,
    Unsupported,
    invalid_field,
)
from backend.files.models import FileUpload, StoredFile
from backend.files.multipart import ClientGone, too_large
from backend.files.names import stored_name
from backend.files.sniff import SNIFF_BYTES, sniff
from backend.files.staging import Progress, Staging
from backend.files.tus import Appended, Target
from backend.files.uploads import Staged, Uploads
from backend.identity import Principal

log = logging.getLogger(__name__)

# A PATCH holds its upload for this long, and renews the hold while bytes keep coming.
LEASE_SECONDS = 60
# How many uploads' running SHA-256 one process keeps (the rest are read back at the end).
KEPT_HASHES = 256


class ResumableUploads:
    """``app.state.resumable_uploads``."""

    def __init__(
        self,
        uploads: Uploads,
        staging: Staging,
        registry: CollectionRegistry,
        settings: Settings,
    ) -> None:
        self.uploads = uploads
        self.staging = staging
        self.registry = registry
        self.settings = settings
        self._hashes: dict[UUID, tuple[int, Any]] = {}

    @property
    def max_size(self) -> int:
        """The largest file any field takes (Tus-Max-Size)."""
        sizes = [
            spec.max_size
            for collection in self.registry
            for spec in collection.file_fields.values()
        ]
        return max(sizes, default=0)

    def _field(self, target: Target) -> tuple[Collection, FileField]:
        collection = self.registry.get(target.collection)
        if collection is None:
            raise NotFound(f"No collection named {target.collection}", code="not_found")
        spec = collection.file_fields.get(target.field)
        if spec is None:
            raise invalid_field(
                f"{target.field!r} is not a file field of {collection.name}"
                f" ({', '.join(sorted(collection.file_fields)) or 'none'})",
                "Upload-Metadata",
                "field is not a file field",
                "header",
            )
        return collection, spec

    # --- the protocol's verbs ----------------------------------------------------------------

    async def create(
        self, state: Any, principal: Principal | None, target: Target, length: int
    ) -> FileUpload:
        """A new upload of ``length`` bytes into ``target``, if the caller may update the
        record (404 when they may not see it, 403 when they may not change it)."""
        if principal is None:
            raise Unauthenticated("Sign in to upload", code="unauthenticated")
        collection, spec = self._field(target)
        if not check_collection(principal.collections, collection.name):
            raise Forbidden(
                f"This API key may not use the collection {collection.name!r}",
                code="insufficient_scope",
            )
        if length < 1:
            raise invalid_field("A file is at least 1 byte", "Upload-Length", "empty", "header")
        if length > spec.max_size:
            raise too_large(
                f"{target.field} takes files of at most {spec.max_size} bytes", target.field
            )
        await self.uploads.may_write(state, collection, principal, target.record_id, False)
        now = state.clock.now()
        async with owned_session(state.database) as db:
            unfinished = await db.scalar(
                select(func.count())
                .select_from(FileUpload)
                .where(FileUpload.user_id == principal.user_id, FileUpload.expires_at > now)
            )
            limit = self.settings.files_resumable_max_unfinished
            if (unfinished or 0) >= limit:
                raise TooMany(
                    f"You have {limit} unfinished uploads (FILES_RESUMABLE_MAX_UNFINISHED):"
                    " finish or delete one first",
                    code="too_many_uploads",
                )
            upload_id = uuid_utils.uuid7()
            upload = FileUpload(
                id=upload_id,
                user_id=principal.user_id,
                collection=collection.name,
                record_id=target.record_id,
                field=target.field,
                name=stored_name(target.filename, self.settings.files_name_max_chars),
                length=length,
                offset=0,
                parts=[],
                tail_bytes=0,
                expires_at=now + timedelta(seconds=self.settings.files_resumable_expiry_seconds),
            )
            upload.s3_upload_id = await self.staging.begin(str(upload_id), upload.key)
            db.add(upload)
        return upload

    async def find(self, state: Any, principal: Principal | None, upload_id: UUID) -> FileUpload:
        """The caller's unexpired upload; 404 for any other."""
        if principal is None:
            raise Unauthenticated("Sign in to upload", code="unauthenticated")
        async with owned_session(state.database) as db:
            upload = await db.scalar(
                select(FileUpload).where(
                    FileUpload.id == upload_id,
                    FileUpload.user_id == principal.user_id,
                    FileUpload.expires_at > state.clock.now(),
                )
            )
        if upload is None:
            raise NotFound("No such upload", code="not_found")
        return upload

    async def terminate(self, state: Any, principal: Principal | None, upload_id: UUID) -> None:
        upload, _ = await self._hold(state, principal, upload_id)
        try:
            await self.staging.discard(str(upload.id), upload.key, _progress(upload))
        finally:
            with anyio.CancelScope(shield=True):
                await self._forget(state, upload.id)

    async def append(
        self,
        state: Any,
        principal: Principal | None,
        upload_id: UUID,
        offset: int,
        declared: int | None,
        body: AsyncIterator[bytes],
    ) -> Appended:
        """Add ``body`` at ``offset`` (409 when the upload is elsewhere); finish the upload when
        its last byte arrives. A client that hangs up keeps what arrived."""
        upload, lease = await self._hold(state, principal, upload_id)
        try:
            if offset != upload.offset:
                raise Conflict(
                    f"The upload is at offset {upload.offset}, not {offset}",
                    code="wrong_offset",
                    headers={"Upload-Offset": str(upload.offset)},
                )
            if declared is not None and offset + declared > upload.length:
                raise too_large(
                    f"The upload is {upload.length} bytes; these would end at {offset + declared}",
                    upload.field,
                )
            progress = await self._receive(state, upload, lease, body)
        except Unsupported:
            with anyio.CancelScope(shield=True):
                await self.staging.discard(str(upload.id), upload.key, _progress(upload))
                await self._forget(state, upload.id)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(state, upload.id, lease)
            raise
        if progress.offset < upload.length:
            return Appended(progress.offset, upload.expires_at)
        name = await self._finish(state, principal, upload, progress)
        return Appended(progress.offset, upload.expires_at, name)

    # --- holding an upload -------------------------------------------------------------------

    async def _hold(
        self, state: Any, principal: Principal | None, upload_id: UUID
    ) -> tuple[FileUpload, UUID]:
        """The caller's upload, held for this request (409 when another request holds it)."""
        found = await self.find(state, principal, upload_id)
        lease = uuid_utils.uuid4()
        async with owned_session(state.database) as db:
            held = await db.scalar(
                update(FileUpload)
                .where(
                    FileUpload.id == found.id,
                    (FileUpload.lease_until.is_(None)) | (FileUpload.lease_until < func.now()),
                )
                .values(
                    lease_id=lease,
                    lease_until=func.now() + text(f"interval '{LEASE_SECONDS} seconds'"),
                )
                .returning(FileUpload)
            )
        if held is None:
            raise Conflict("Another request is writing this upload", code="upload_busy")
        return held, lease

    async def _renew(self, state: Any, upload_id: UUID, lease: UUID) -> None:
        async with owned_session(state.database) as db:
            await db.execute(
                update(FileUpload)
                .where(FileUpload.id == upload_id, FileUpload.lease_id == lease)
                .values(lease_until=func.now() + text(f"interval '{LEASE_SECONDS} seconds'"))
            )

    async def _release(self, state: Any, upload_id: UUID, lease: UUID, **values: Any) -> None:
        async with owned_session(state.database) as db:
            await db.execute(
                update(FileUpload)
                .where(FileUpload.id == upload_id, FileUpload.lease_id == lease)
                .values(lease_id=None, lease_until=None, **values)
            )

    async def _forget(self, state: Any, upload_id: UUID) -> None:
        self._hashes.pop(upload_id, None)
        async with owned_session(state.database) as db:
            await db.execute(delete(FileUpload).where(FileUpload.id == upload_id))

    # --- receiving bytes ---------------------------------------------------------------------

    async def _receive(
        self, state: Any, upload: FileUpload, lease: UUID, body: AsyncIterator[bytes]
    ) -> Progress:
        _, spec = self._field(
            Target(upload.collection, upload.record_id, upload.field, upload.name)
        )
        kept = self._hashes.pop(upload.id, None)
        hasher: Any = None
        if kept is not None and kept[0] == upload.offset:
            hasher = kept[1]
        elif upload.offset == 0:
            hasher = hashlib.sha256()
        head = b""
        if not upload.content_type and upload.offset:
            head = await self.staging.read_head(str(upload.id), _progress(upload), upload.offset)
        incoming = _Incoming(self, state, upload, lease, spec, head, body)
        progress = await self.staging.append(
            str(upload.id),
            upload.key,
            _progress(upload),
            incoming.chunks(),
            hasher.update if hasher is not None else _ignore,
        )
        with anyio.CancelScope(shield=True):
            await self._release(
                state,
                upload.id,
                lease,
                offset=progress.offset,
                parts=progress.parts,
                tail_bytes=progress.tail_bytes,
                content_type=incoming.mime,
            )
        if hasher is not None:
            if len(self._hashes) >= KEPT_HASHES:
                self._hashes.pop(next(iter(self._hashes)))
            self._hashes[upload.id] = (progress.offset, hasher)
        upload.content_type = incoming.mime
        return progress

    # --- finishing ---------------------------------------------------------------------------

    async def _finish(
        self, state: Any, principal: Principal | None, upload: FileUpload, progress: Progress
    ) -> str:
        """The whole file is staged: make it the field's file, as a multipart upload would."""
        collection = self.registry.get(upload.collection)
        assert collection is not None
        kept = self._hashes.pop(upload.id, None)
        row = StoredFile(
            collection=upload.collection,
            record_id=upload.record_id,
            field=upload.field,
            name=upload.name,
            uploaded_by=upload.user_id,
            size=upload.length,
            content_type=upload.content_type,
        )
        staged = Staged(collection, principal, upload.record_id)
        try:
            async with owned_session(state.database) as db:
                db.add(row)  # before the object exists: the sweeper's, should anything fail
            staged.rows.append(row)
            await self.staging.finish(str(upload.id), upload.key, progress, upload.length)
            if kept is not None and kept[0] == upload.length:
                row.sha256 = kept[1].hexdigest()
            else:
                row.sha256 = await self._read_sha256(upload.key)
            staged.names[upload.field] = [upload.name]
            async with owned_session(state.database) as db:
                records = RecordService(
                    db, state.reader, self.settings, state.clock, self.uploads.rules
                )
                await records.update(
                    collection, principal, upload.record_id, {}, None, staged.names
                )
                await self.uploads.attach(db, staged)
                await db.execute(delete(FileUpload).where(FileUpload.id == upload.id))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.uploads.discard(state, staged)
                try:
                    await self.staging.discard(str(upload.id), upload.key, progress)
                except Exception:
                    log.exception("could not remove the staged bytes of upload %s", upload.id)
                await self._forget(state, upload.id)
            raise
        return upload.name

    async def _read_sha256(self, key: str) -> str:
        hasher = hashlib.sha256()
        opened = await self.uploads.storage.open(key)
        pending = bytearray()
        async for chunk in opened.chunks:
            pending += chunk
            if len(pending) >= 1024 * 1024:
                await anyio.to_thread.run_sync(hasher.update, bytes(pending))
                pending = bytearray()
        hasher.update(bytes(pending))
        return hasher.hexdigest()


class _Incoming:
    """A PATCH's bytes on their way to staging: never past the upload's length, typed from
    the file's first bytes, the hold renewed while they come; a client that hangs up ends
    them (what arrived is kept)."""

    def __init__(
        self,
        service: ResumableUploads,
        state: Any,
        upload: FileUpload,
        lease: UUID,
        spec: FileField,
        head: bytes,
        body: AsyncIterator[bytes],
    ) -> None:
        self.service = service
        self.state = state
        self.upload = upload
        self.lease = lease
        self.spec = spec
        self.head = bytearray(head)
        self.body = body
        self.mime = upload.content_type
        self.gone = False

    def _check_type(self) -> None:
        self.mime = sniff(bytes(self.head[:SNIFF_BYTES]))
        self.head = bytearray()
        if not self.spec.accepts(self.mime):
            field = self.upload.field
            raise Unsupported(
                f"{field} does not take {self.mime} files ({', '.join(self.spec.mime)})",
                errors=[
                    {"field": field, "message": f"{self.mime} is not accepted", "source": "body"}
                ],
            )

    async def chunks(self) -> AsyncIterator[bytes]:
        upload = self.upload
        received = upload.offset
        renewed = time.monotonic()
        try:
            async for chunk in self.body:
                received += len(chunk)
                if received > upload.length:
                    raise too_large(
                        f"The upload is {upload.length} bytes; more were sent", upload.field
                    )
                if not self.mime:
                    self.head += chunk
                    if len(self.head) >= SNIFF_BYTES:
                        self._check_type()
                if time.monotonic() - renewed > LEASE_SECONDS / 3:
                    await self.service._renew(self.state, upload.id, self.lease)
                    renewed = time.monotonic()
                yield chunk
        except ClientGone:
            self.gone = True
        if not self.mime and received == upload.length:
            self._check_type()


def _progress(upload: FileUpload) -> Progress:
    return Progress(upload.offset, list(upload.parts or []), upload.tail_bytes, upload.s3_upload_id)


def _ignore(_: bytes | bytearray) -> None:
    pass
