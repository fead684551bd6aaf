"""Resumable uploads (tus 1.0, docs/files.md): a file sent in as many requests as it takes,
finished into a record's file field under the same checks as a multipart upload.

An upload names its target when it is made (collection, record, field, file name) and is the
caller's alone: anyone else gets 404 for it. The record's update rule is asked when it is made
and again when it is finished (in the record's own transaction). Its bytes wait in staging
(backend/files/staging.py); each PATCH appends at the offset the upload has, and one PATCH at a
time holds it (a lease in its row, backend/files/resumable_lease.py). Bytes are checked as they
pass (backend/files/resumable_receive.py), and when the last byte is in the staged bytes become
the field's file (backend/files/resumable_finish.py). This module is the protocol's verbs:
create, find, append, terminate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import anyio
import uuid_utils.compat as uuid_utils
from sqlalchemy import func, select

from backend.auth.scopes import check_collection
from backend.collections.files import FileField
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
from backend.files.models import FileUpload
from backend.files.multipart import too_large
from backend.files.names import stored_name
from backend.files.resumable_finish import finish
from backend.files.resumable_lease import drop, hold, progress_of, release
from backend.files.resumable_receive import RunningHashes, receive
from backend.files.staging import Progress, Staging
from backend.files.tus import Appended, Target
from backend.files.uploads import Uploads
from backend.identity import Principal


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
        self.hashes = RunningHashes()

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
            await self.staging.discard(str(upload.id), upload.key, progress_of(upload))
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
                await self.staging.discard(str(upload.id), upload.key, progress_of(upload))
                await self._forget(state, upload.id)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await release(state.database, upload.id, lease)
            raise
        if progress.offset < upload.length:
            return Appended(progress.offset, upload.expires_at)
        name = await self._finish(state, principal, upload, progress)
        return Appended(progress.offset, upload.expires_at, name)

    # --- the request's parts: holding, receiving, finishing (each a module of its own) -------

    async def _hold(
        self, state: Any, principal: Principal | None, upload_id: UUID
    ) -> tuple[FileUpload, UUID]:
        """The caller's upload, held for this request (409 when another request holds it)."""
        found = await self.find(state, principal, upload_id)
        return await hold(state.database, found.id)

    async def _forget(self, state: Any, upload_id: UUID) -> None:
        self.hashes.forget(upload_id)
        await drop(state.database, upload_id)

    async def _receive(
        self, state: Any, upload: FileUpload, lease: UUID, body: AsyncIterator[bytes]
    ) -> Progress:
        _, spec = self._field(
            Target(upload.collection, upload.record_id, upload.field, upload.name)
        )
        return await receive(state, self.staging, self.hashes, upload, lease, spec, body)

    async def _finish(
        self, state: Any, principal: Principal | None, upload: FileUpload, progress: Progress
    ) -> str:
        collection = self.registry.get(upload.collection)
        assert collection is not None
        hasher = self.hashes.take(upload.id, upload.length)
        return await finish(
            state,
            self.uploads,
            self.staging,
            self.settings,
            collection,
            principal,
            upload,
            progress,
            hasher,
        )
