"""Receiving a PATCH's bytes into a resumable upload's staging, checked as they pass.

Bytes never go past the upload's length (413), the file's type is sniffed from its first bytes
(415 naming the field), and the hold on the upload is renewed while they come; a client that
hangs up ends them and what arrived is kept. The SHA-256 is taken as they pass when this
process saw every byte so far (``RunningHashes``); otherwise it is read back from storage when
the upload is finished.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import anyio

from backend.collections.files import FileField
from backend.errors import Unsupported
from backend.files.models import FileUpload
from backend.files.multipart import ClientGone, too_large
from backend.files.resumable_lease import LEASE_SECONDS, progress_of, release, renew
from backend.files.sniff import SNIFF_BYTES, sniff
from backend.files.staging import Progress, Staging

# How many uploads' running SHA-256 one process keeps (the rest are read back at the end).
KEPT_HASHES = 256


class RunningHashes:
    """The SHA-256 of each upload's bytes so far, by upload, for the last ``KEPT_HASHES``."""

    def __init__(self) -> None:
        self._kept: dict[UUID, tuple[int, Any]] = {}

    def take(self, upload_id: UUID, offset: int) -> Any:
        """The upload's running hash if it covers exactly its first ``offset`` bytes, else
        None; either way this process keeps it no longer."""
        kept = self._kept.pop(upload_id, None)
        if kept is not None and kept[0] == offset:
            return kept[1]
        return None

    def keep(self, upload_id: UUID, offset: int, hasher: Any) -> None:
        if len(self._kept) >= KEPT_HASHES:
            self._kept.pop(next(iter(self._kept)))
        self._kept[upload_id] = (offset, hasher)

    def forget(self, upload_id: UUID) -> None:
        self._kept.pop(upload_id, None)


async def receive(
    state: Any,
    staging: Staging,
    hashes: RunningHashes,
    upload: FileUpload,
    lease: UUID,
    spec: FileField,
    body: AsyncIterator[bytes],
) -> Progress:
    """Append ``body`` to the held upload's staged bytes and let go of it, its row saying how
    far it got and, once known, the file's type."""
    hasher = hashes.take(upload.id, upload.offset)
    if hasher is None and upload.offset == 0:
        hasher = hashlib.sha256()
    head = b""
    if not upload.content_type and upload.offset:
        head = await staging.read_head(str(upload.id), progress_of(upload), upload.offset)
    incoming = _Incoming(state.database, upload, lease, spec, head, body)
    progress = await staging.append(
        str(upload.id),
        upload.key,
        progress_of(upload),
        incoming.chunks(),
        hasher.update if hasher is not None else _ignore,
    )
    with anyio.CancelScope(shield=True):
        await release(
            state.database,
            upload.id,
            lease,
            offset=progress.offset,
            parts=progress.parts,
            tail_bytes=progress.tail_bytes,
            content_type=incoming.mime,
        )
    if hasher is not None:
        hashes.keep(upload.id, progress.offset, hasher)
    upload.content_type = incoming.mime
    return progress


class _Incoming:
    """A PATCH's bytes on their way to staging: never past the upload's length, typed from
    the file's first bytes, the hold renewed while they come; a client that hangs up ends
    them (what arrived is kept)."""

    def __init__(
        self,
        database: Any,
        upload: FileUpload,
        lease: UUID,
        spec: FileField,
        head: bytes,
        body: AsyncIterator[bytes],
    ) -> None:
        self.database = database
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
                    await renew(self.database, upload.id, self.lease)
                    renewed = time.monotonic()
                yield chunk
        except ClientGone:
            self.gone = True
        if not self.mime and received == upload.length:
            self._check_type()


def _ignore(_: bytes | bytearray) -> None:
    pass
