"""Where file bytes live: one interface over the local disk (dev) and S3 (production).

Both backends are obstore stores (docs/decisions/0019-files-storage.md): ``LocalStore`` under
the data dir, ``S3Store`` on a bucket (any S3-compatible server), chosen by FILES_STORAGE. A
write streams from an async iterator and is atomic: an object appears whole or not at all, and
a write that fails part way (the iterator raises: a limit, a broken upload) leaves nothing
behind. Big objects go up as S3 multipart uploads of FILES_UPLOAD_PART_BYTES, at most
FILES_UPLOAD_CONCURRENCY parts in flight, so memory stays bounded by their product.

The API uses the async methods; workers (deletions, the sweeper) the ``*_sync`` ones, which
the same store offers without an event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.store import LocalStore, S3Store

from backend.config import Settings

if TYPE_CHECKING:
    from obstore import ObjectMeta

# Downloads are handed on in chunks of about this size (obstore's own default is 10 MB, which
# a slow client would hold in memory per download).
STREAM_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    etag: str | None
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class Opened:
    """An object being read: what it is, which bytes come (``start`` to ``end``, exclusive)."""

    object: StoredObject
    start: int
    end: int
    chunks: AsyncIterator[bytes]


def _stored(meta: ObjectMeta) -> StoredObject:
    return StoredObject(
        key=meta["path"], size=meta["size"], etag=meta["e_tag"], last_modified=meta["last_modified"]
    )


class Storage:
    """Objects by key (``notes/<record id>/<name>``) in one store."""

    def __init__(
        self,
        store: Callable[[], Any],
        *,
        part_bytes: int,
        concurrency: int,
        kind: str,
        where: str,
    ) -> None:
        self._make_store = store
        self._made: Any = None
        self.part_bytes = part_bytes
        self.concurrency = concurrency
        self.kind = kind
        self.where = where  # for people: the folder, or s3://bucket/prefix

    @property
    def _store(self) -> Any:
        """The obstore store, made on first use (a local one makes its folder then)."""
        if self._made is None:
            self._made = self._make_store()
        return self._made

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredObject:
        """Write ``key`` from ``chunks``; if they raise, nothing is written and it re-raises."""
        await obstore.put_async(
            self._store,
            key,
            chunks,
            chunk_size=self.part_bytes,
            max_concurrency=self.concurrency,
        )
        found = await self.head(key)
        assert found is not None, f"{key} was written and is not there"
        return found

    async def head(self, key: str) -> StoredObject | None:
        try:
            return _stored(await obstore.head_async(self._store, key))
        except FileNotFoundError:
            return None

    async def open(self, key: str, start: int | None = None, end: int | None = None) -> Opened:
        """Read ``key`` (bytes ``start`` to ``end``, exclusive, when given). FileNotFoundError
        when there is no such object."""
        options: dict[str, Any] = {}
        if start is not None and end is not None:
            options["range"] = (start, end)
        result = await obstore.get_async(self._store, key, options=options or None)  # type: ignore[arg-type]
        first, last = result.range

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result.stream(min_chunk_size=STREAM_CHUNK_BYTES):
                yield bytes(chunk)

        return Opened(object=_stored(result.meta), start=first, end=last, chunks=chunks())

    async def read(self, key: str) -> bytes:
        """A small object whole (a thumbnail's source is bounded before it is read)."""
        result = await obstore.get_async(self._store, key)
        return bytes(await result.bytes_async())

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys``; a key with no object is already done."""
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                await obstore.delete_async(self._store, key)

    # --- for workers (no event loop) -----------------------------------------------------

    def delete_sync(self, keys: Sequence[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                obstore.delete(self._store, key)

    def iter_sync(self, key: str) -> Iterator[bytes]:
        """``key``'s bytes as they stream from storage, in chunks of about STREAM_CHUNK_BYTES
        (documents read for vector search). FileNotFoundError when there is no such object."""
        result = obstore.get(self._store, key)
        for chunk in result.stream(min_chunk_size=STREAM_CHUNK_BYTES):
            yield bytes(chunk)

    def list_sync(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix/`` (a folder: ``notes/<id>``)."""
        for batch in obstore.list(self._store, prefix=prefix.rstrip("/") + "/"):
            for meta in batch:
                yield _stored(meta)

    def delete_prefix_sync(self, prefix: str) -> int:
        """Delete everything under ``prefix/``; how many objects that was."""
        keys = [found.key for found in self.list_sync(prefix)]
        self.delete_sync(keys)
        return len(keys)


def local_files_dir(settings: Settings) -> Path:
    return Path(settings.files_local_dir or Path(settings.data_dir) / "files").resolve()


def open_storage(settings: Settings) -> Storage:
    """The store FILES_STORAGE names. Opening touches nothing (no folder, no connection):
    the first call does."""
    part_bytes = settings.files_upload_part_bytes
    concurrency = settings.files_upload_concurrency
    if settings.files_storage == "local":
        folder = local_files_dir(settings)
        return Storage(
            lambda: LocalStore(folder, mkdir=True),
            part_bytes=part_bytes,
            concurrency=concurrency,
            kind="local",
            where=str(folder),
        )
    config: dict[str, Any] = {"server_side_encryption": settings.files_s3_encryption}
    if settings.files_s3_kms_key_id:
        config["sse_kms_key_id"] = settings.files_s3_kms_key_id
    if settings.files_s3_region:
        config["region"] = settings.files_s3_region
    if settings.files_s3_endpoint:
        config["endpoint"] = settings.files_s3_endpoint
        config["allow_http"] = settings.files_s3_endpoint.startswith("http://")
    if settings.files_s3_access_key_id:
        # Otherwise the standard AWS chain: environment, web identity, the ECS task role,
        # the instance profile.
        config["access_key_id"] = settings.files_s3_access_key_id
        config["secret_access_key"] = settings.files_s3_secret_access_key
    where = f"s3://{settings.files_s3_bucket}/{settings.files_s3_prefix}"
    return Storage(
        lambda: S3Store(
            settings.files_s3_bucket,
            prefix=settings.files_s3_prefix or None,
            config=config,  # type: ignore[arg-type]
        ),
        part_bytes=part_bytes,
        concurrency=concurrency,
        kind="s3",
        where=where,
    )
