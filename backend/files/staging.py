"""Where a resumable upload's bytes wait until the last one arrives, on each storage backend.

- Local disk: one staging file per upload (``<files dir>/.uploads/<id>``), written at the
  upload's offset; finishing truncates it to the upload's length and renames it to the file's
  key (the same filesystem: the rename is atomic).
- S3: an S3 multipart upload, created with the upload. Bytes gather in memory until they make a
  part of FILES_UPLOAD_PART_BYTES (S3's floor is 5 MiB), which goes up at once: a PATCH holds at
  most one part. What is left when a PATCH ends (less than a part) is kept as a tail object
  (``.uploads/<id>.tail.<parts>``) and put in front of the next PATCH's bytes. Finishing sends
  the rest as the last part and completes the upload.

obstore (docs/decisions/0019) has no call for a multipart upload that outlives one ``put``, so
the S3 parts go through boto3 (docs/decisions/0021-resumable-uploads.md), each call in a thread.

A PATCH that fails part way leaves the upload as it was before it (the local file is cut back
to the old offset; S3 parts sent under numbers the upload does not record are overwritten by
the next PATCH); one whose client hung up keeps what arrived.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.to_thread

from backend.config import Settings
from backend.files.models import staging_key
from backend.files.storage import Storage, local_files_dir

# Bytes gathered before one write to the staging file (one thread hop per write).
LOCAL_WRITE_BYTES = 1024 * 1024


@dataclass
class Progress:
    """Where an upload stands in staging: what the row keeps between PATCHes."""

    offset: int
    parts: list[list[Any]]  # S3: [[number, etag, size], ...]
    tail_bytes: int
    s3_upload_id: str | None


class Staging(Protocol):
    async def begin(self, upload_id: str, key: str) -> str | None:
        """Make room for a new upload; the S3 multipart upload's id (None on local disk)."""

    async def append(
        self,
        upload_id: str,
        key: str,
        progress: Progress,
        chunks: AsyncIterator[bytes],
        on_bytes: Callable[[bytes | bytearray], None],
    ) -> Progress:
        """Add ``chunks`` at ``progress.offset`` (``on_bytes`` sees each piece written, in
        order, on a worker thread); where the upload stands after them. If ``chunks`` raise,
        nothing of this call counts and it re-raises."""

    async def finish(self, upload_id: str, key: str, progress: Progress, length: int) -> None:
        """Turn the staged bytes into the object ``key``."""

    async def discard(self, upload_id: str, key: str, progress: Progress) -> None:
        """Remove the staged bytes (an S3 upload is aborted)."""

    def discard_sync(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        """The same, from a worker (the sweeper)."""

    async def read_head(self, upload_id: str, progress: Progress, size: int) -> bytes:
        """The first ``size`` bytes staged (``size`` at most what is staged, and small)."""


class LocalStaging:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, upload_id: str) -> Path:
        return self.folder / staging_key(upload_id)

    async def begin(self, upload_id: str, key: str) -> str | None:
        path = self._path(upload_id)

        def make() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

        await anyio.to_thread.run_sync(make)
        return None

    async def append(
        self,
        upload_id: str,
        key: str,
        progress: Progress,
        chunks: AsyncIterator[bytes],
        on_bytes: Callable[[bytes | bytearray], None],
    ) -> Progress:
        path = self._path(upload_id)
        start = progress.offset
        handle = await anyio.to_thread.run_sync(lambda: open(path, "r+b"))  # noqa: SIM115
        written = 0

        def write(data: bytes) -> None:
            handle.seek(start + written)
            handle.write(data)
            on_bytes(data)

        try:
            pending = bytearray()
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= LOCAL_WRITE_BYTES:
                    data, pending = bytes(pending), bytearray()
                    await anyio.to_thread.run_sync(write, data)
                    written += len(data)
            if pending:
                await anyio.to_thread.run_sync(write, bytes(pending))
                written += len(pending)
            await anyio.to_thread.run_sync(handle.flush)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: _cut(handle, start))
            raise
        finally:
            await anyio.to_thread.run_sync(handle.close)
        return Progress(start + written, [], 0, None)

    async def finish(self, upload_id: str, key: str, progress: Progress, length: int) -> None:
        staged, final = self._path(upload_id), self.folder / key

        def move() -> None:
            os.truncate(staged, length)  # a crash may have left bytes past the offset
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)

        await anyio.to_thread.run_sync(move)

    async def discard(self, upload_id: str, key: str, progress: Progress) -> None:
        await anyio.to_thread.run_sync(self.discard_sync, upload_id, key, None)

    def discard_sync(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(upload_id).unlink()

    async def read_head(self, upload_id: str, progress: Progress, size: int) -> bytes:
        path = self._path(upload_id)

        def read() -> bytes:
            with open(path, "rb") as handle:
                return handle.read(size)

        return await anyio.to_thread.run_sync(read)


def _cut(handle: Any, size: int) -> None:
    handle.flush()
    handle.truncate(size)


class S3Staging:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self.bucket = settings.files_s3_bucket
        self.prefix = settings.files_s3_prefix.strip("/")
        self.part_bytes = settings.files_upload_part_bytes
        self._made: Any = None

    @property
    def _client(self) -> Any:
        if self._made is None:
            self._made = s3_client(self.settings)
        return self._made

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _tail(upload_id: str, parts: int) -> str:
        # Named by the parts before it: a tail only ever grows while their count stays.
        return f"{staging_key(upload_id)}.tail.{parts}"

    async def begin(self, upload_id: str, key: str) -> str | None:
        options: dict[str, str] = {"ServerSideEncryption": self.settings.files_s3_encryption}
        if self.settings.files_s3_kms_key_id:
            options["SSEKMSKeyId"] = self.settings.files_s3_kms_key_id
        made = await anyio.to_thread.run_sync(
            lambda: self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), **options
            )
        )
        return str(made["UploadId"])

    async def _send_part(
        self,
        key: str,
        s3_upload_id: str,
        number: int,
        data: bytes | bytearray,
        on_bytes: Callable[[bytes | bytearray], None],
    ) -> list[Any]:
        def send() -> list[Any]:
            on_bytes(data)
            sent = self._client.upload_part(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=s3_upload_id,
                PartNumber=number,
                Body=data,
            )
            return [number, sent["ETag"], len(data)]

        return await anyio.to_thread.run_sync(send)

    async def append(
        self,
        upload_id: str,
        key: str,
        progress: Progress,
        chunks: AsyncIterator[bytes],
        on_bytes: Callable[[bytes | bytearray], None],
    ) -> Progress:
        assert progress.s3_upload_id is not None
        parts = list(progress.parts)
        buffer = bytearray()
        if progress.tail_bytes:
            # Seen by on_bytes already (a PATCH before this one).
            tail = await self.storage.read(self._tail(upload_id, len(parts)))
            buffer += tail[: progress.tail_bytes]
        seen = len(buffer)
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) >= self.part_bytes:
                data, buffer = buffer, bytearray()  # handed on as is: one part in memory
                parts.append(
                    await self._send_part(
                        key, progress.s3_upload_id, len(parts) + 1, data, _after(seen, on_bytes)
                    )
                )
                seen = 0
        rest = bytes(buffer)
        if rest:
            await anyio.to_thread.run_sync(on_bytes, rest[seen:])
            await self.storage.put(self._tail(upload_id, len(parts)), _once(rest))
        offset = sum(int(part[2]) for part in parts) + len(rest)
        return Progress(offset, parts, len(rest), progress.s3_upload_id)

    async def finish(self, upload_id: str, key: str, progress: Progress, length: int) -> None:
        assert progress.s3_upload_id is not None
        parts = list(progress.parts)
        if progress.tail_bytes:
            tail = await self.storage.read(self._tail(upload_id, len(parts)))
            parts.append(
                await self._send_part(
                    key,
                    progress.s3_upload_id,
                    len(parts) + 1,
                    tail[: progress.tail_bytes],
                    lambda _: None,
                )
            )
        await anyio.to_thread.run_sync(
            lambda: self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self._key(key),
                UploadId=progress.s3_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": int(n), "ETag": str(etag)} for n, etag, _ in parts]
                },
            )
        )
        await self._forget_tails(upload_id)

    async def _forget_tails(self, upload_id: str) -> None:
        await anyio.to_thread.run_sync(self._forget_tails_sync, upload_id)

    def _forget_tails_sync(self, upload_id: str) -> None:
        prefix = self._key(staging_key(upload_id) + ".tail.")
        listed = self._client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        for found in listed.get("Contents", []):
            self._client.delete_object(Bucket=self.bucket, Key=found["Key"])

    async def discard(self, upload_id: str, key: str, progress: Progress) -> None:
        await anyio.to_thread.run_sync(self.discard_sync, upload_id, key, progress.s3_upload_id)

    def discard_sync(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        if s3_upload_id:
            with contextlib.suppress(self._client.exceptions.NoSuchUpload):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(key), UploadId=s3_upload_id
                )
        self._forget_tails_sync(upload_id)

    async def read_head(self, upload_id: str, progress: Progress, size: int) -> bytes:
        # A part is at least 5 MiB: bytes not yet typed (under SNIFF_BYTES) are all in the tail.
        tail = await self.storage.read(self._tail(upload_id, len(progress.parts)))
        return tail[:size]


def _after(
    seen: int, on_bytes: Callable[[bytes | bytearray], None]
) -> Callable[[bytes | bytearray], None]:
    """``on_bytes`` for a part whose first ``seen`` bytes it already saw (a kept tail)."""

    def call(data: bytes | bytearray) -> None:
        on_bytes(data[seen:] if seen else data)

    return call


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client on the bucket FILES_S3_* names (the AWS chain when no keys are set)."""
    import boto3  # type: ignore[import-untyped]

    options: dict[str, Any] = {}
    if settings.files_s3_endpoint:
        options["endpoint_url"] = settings.files_s3_endpoint
    if settings.files_s3_region:
        options["region_name"] = settings.files_s3_region
    if settings.files_s3_access_key_id:
        options["aws_access_key_id"] = settings.files_s3_access_key_id
        options["aws_secret_access_key"] = settings.files_s3_secret_access_key
    return boto3.client("s3", **options)


def open_staging(settings: Settings, storage: Storage) -> Staging:
    if settings.files_storage == "local":
        return LocalStaging(local_files_dir(settings))
    return S3Staging(storage, settings)
