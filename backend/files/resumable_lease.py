"""A resumable upload's row while requests come: who holds it, and how far it got.

One PATCH at a time writes an upload: it holds a lease in the upload's row (``hold``), renews
it while bytes keep coming (``renew``) and lets go of it with what it wrote (``release``); a
holder that crashed lets go when its lease runs out. ``progress_of`` reads where the staged
bytes stand from the row; ``drop`` removes the row when the upload ends.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import uuid_utils.compat as uuid_utils
from sqlalchemy import delete, func, text, update

from backend.db.transactions import owned_session
from backend.errors import Conflict
from backend.files.models import FileUpload
from backend.files.staging import Progress

# A PATCH holds its upload for this long, and renews the hold while bytes keep coming.
LEASE_SECONDS = 60


async def hold(database: Any, upload_id: UUID) -> tuple[FileUpload, UUID]:
    """The upload, held for this request under a new lease (409 when another request holds
    it)."""
    lease = uuid_utils.uuid4()
    async with owned_session(database) as db:
        held = await db.scalar(
            update(FileUpload)
            .where(
                FileUpload.id == upload_id,
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


async def renew(database: Any, upload_id: UUID, lease: UUID) -> None:
    async with owned_session(database) as db:
        await db.execute(
            update(FileUpload)
            .where(FileUpload.id == upload_id, FileUpload.lease_id == lease)
            .values(lease_until=func.now() + text(f"interval '{LEASE_SECONDS} seconds'"))
        )


async def release(database: Any, upload_id: UUID, lease: UUID, **values: Any) -> None:
    """Let go of the upload, writing ``values`` (how far it got) into its row."""
    async with owned_session(database) as db:
        await db.execute(
            update(FileUpload)
            .where(FileUpload.id == upload_id, FileUpload.lease_id == lease)
            .values(lease_id=None, lease_until=None, **values)
        )


async def drop(database: Any, upload_id: UUID) -> None:
    async with owned_session(database) as db:
        await db.execute(delete(FileUpload).where(FileUpload.id == upload_id))


def progress_of(upload: FileUpload) -> Progress:
    return Progress(upload.offset, list(upload.parts or []), upload.tail_bytes, upload.s3_upload_id)
