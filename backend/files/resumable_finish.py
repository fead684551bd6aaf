"""Finishing a resumable upload: its staged bytes become the field's file.

When the last byte is in, the staged bytes become the file's object, its ledger row is written
(before the object exists, so the sweeper has it should anything fail) with the SHA-256, and
the record's update adds its name: the field's count, the update rule and the realtime and
webhook change are those of any record update (``RecordService.update``), in the record's own
transaction. If anything fails, what was stored and staged is removed and the upload is gone.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy import delete

from backend.collections.service import RecordService
from backend.collections.spec import Collection
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.files.models import FileUpload, StoredFile
from backend.files.resumable_lease import drop
from backend.files.staging import Progress, Staging
from backend.files.storage import Storage
from backend.files.uploads import Staged, Uploads
from backend.identity import Principal

log = logging.getLogger(__name__)


async def finish(
    state: Any,
    uploads: Uploads,
    staging: Staging,
    settings: Settings,
    collection: Collection,
    principal: Principal | None,
    upload: FileUpload,
    progress: Progress,
    hasher: Any,
) -> str:
    """The whole file is staged: make it the field's file, as a multipart upload would.
    ``hasher`` is the SHA-256 of all its bytes if this process took it, else None."""
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
        await staging.finish(str(upload.id), upload.key, progress, upload.length)
        if hasher is not None:
            row.sha256 = hasher.hexdigest()
        else:
            row.sha256 = await read_sha256(uploads.storage, upload.key)
        staged.names[upload.field] = [upload.name]
        async with owned_session(state.database) as db:
            records = RecordService(db, state.reader, settings, state.clock, uploads.rules)
            await records.update(collection, principal, upload.record_id, {}, None, staged.names)
            await uploads.attach(db, staged)
            await db.execute(delete(FileUpload).where(FileUpload.id == upload.id))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await uploads.discard(state, staged)
            try:
                await staging.discard(str(upload.id), upload.key, progress)
            except Exception:
                log.exception("could not remove the staged bytes of upload %s", upload.id)
            await drop(state.database, upload.id)
        raise
    return upload.name


async def read_sha256(storage: Storage, key: str) -> str:
    """The SHA-256 of a stored object, read back from storage."""
    hasher = hashlib.sha256()
    opened = await storage.open(key)
    pending = bytearray()
    async for chunk in opened.chunks:
        pending += chunk
        if len(pending) >= 1024 * 1024:
            await anyio.to_thread.run_sync(hasher.update, bytes(pending))
            pending = bytearray()
    hasher.update(bytes(pending))
    return hasher.hexdigest()
