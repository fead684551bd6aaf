"""The ledger of stored files: a row for every object written under a record's folder.

A row is written (and committed) before its bytes go to storage, as ``attached = false``; the
record's write marks it attached in the same transaction that puts the name in the record.
So no object exists without a row, and the sweeper (workers/tasks/files.py) finds every file no
record holds: rows never attached (a crash, a refused write) once FILES_PENDING_GRACE_SECONDS
have passed, and attached rows whose record let go of them. It also keeps what a download
answers with (type, size, the SHA-256 that is its ETag) without asking storage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column


class StoredFile(UUIDv7AuditBase):
    __tablename__ = "stored_files"
    __table_args__ = (
        UniqueConstraint("collection", "record_id", "name", name="uq_stored_files_key"),
        Index("ix_stored_files_attached_created_at", "attached", "created_at"),
    )

    collection: Mapped[str] = mapped_column(String(63))
    record_id: Mapped[UUID] = mapped_column(Uuid)
    field: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    content_type: Mapped[str] = mapped_column(String(255), default="", server_default="")
    sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    attached: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    uploaded_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    @property
    def key(self) -> str:
        return object_key(self.collection, self.record_id, self.name)


def record_folder(collection: str, record_id: UUID | str) -> str:
    """Where a record's files live in storage: every key of the record starts with it."""
    return f"{collection}/{record_id}"


def object_key(collection: str, record_id: UUID | str, name: str) -> str:
    return f"{record_folder(collection, record_id)}/{name}"


def thumb_key(collection: str, record_id: UUID | str, size: str, name: str) -> str:
    return f"{record_folder(collection, record_id)}/thumbs/{size}/{name}"


class FileUpload(UUIDv7AuditBase):
    """A resumable (tus) upload under way: whose it is, where it goes, how far it got.

    Its bytes wait in staging (backend/files/staging.py) until the last one arrives; then it is
    finished into its field as a multipart upload would be (a ``stored_files`` row, the record's
    update) and the row goes. An unfinished one past ``expires_at`` is the sweeper's.
    """

    __tablename__ = "file_uploads"
    __table_args__ = (
        Index("ix_file_uploads_user_id", "user_id"),
        Index("ix_file_uploads_expires_at", "expires_at"),
    )

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    collection: Mapped[str] = mapped_column(String(63))
    record_id: Mapped[UUID] = mapped_column(Uuid)
    field: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(Text)  # the stored name it will have (sanitized)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The type sniffed from its first bytes ("" until they arrived).
    content_type: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # S3: the multipart upload, its parts so far ([[number, etag, size], ...]) and how many
    # bytes wait in the tail object (less than a part).
    s3_upload_id: Mapped[str | None] = mapped_column(Text, default=None)
    parts: Mapped[list[list[Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    tail_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # One PATCH at a time: who holds the upload, until when (a crashed holder's lease ends).
    lease_id: Mapped[UUID | None] = mapped_column(Uuid, default=None)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def key(self) -> str:
        return object_key(self.collection, self.record_id, self.name)


def staging_key(upload_id: UUID | str) -> str:
    """Where an upload's waiting bytes are kept in the store (the local file, the S3 tail)."""
    return f".uploads/{upload_id}"
