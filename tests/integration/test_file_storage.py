"""The storage behind files, one suite over both backends: the local disk, and S3 as spoken by
moto's server on loopback (tests/support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from backend.config import settings_from_env
from backend.files.storage import Storage, open_storage

MIB = 1024 * 1024


class Refused(Exception):
    """What a write's source raises part way: a limit reached, an upload broken off."""


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> Iterator[Storage]:
    if request.param == "local":
        overrides = {"files_storage": "local", "files_local_dir": str(tmp_path / "files")}
    else:
        s3 = request.getfixturevalue("s3_server")
        overrides = s3.settings_for(s3.new_bucket())
    settings = settings_from_env(
        {}, env="test", files_upload_part_bytes=5 * MIB, files_upload_concurrency=2, **overrides
    )
    yield open_storage(settings)


async def chunks(total: int, size: int = 256 * 1024, fail_after: int | None = None):
    sent = 0
    while sent < total:
        piece = bytes((sent + i) % 251 for i in range(min(size, total - sent)))
        yield piece
        sent += len(piece)
        if fail_after is not None and sent >= fail_after:
            raise Refused


def expected(total: int) -> bytes:
    return bytes(i % 251 for i in range(total))


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def test_a_write_streams_in_and_reads_back_whole_and_by_range(storage):
    stored = await storage.put("notes/r1/a.bin", chunks(300_000))
    assert stored.size == 300_000 and stored.etag
    assert (await storage.head("notes/r1/a.bin")).size == 300_000

    whole = await storage.open("notes/r1/a.bin")
    assert (whole.start, whole.end) == (0, 300_000)
    assert await collect(whole.chunks) == expected(300_000)

    part = await storage.open("notes/r1/a.bin", 1000, 1010)
    assert (part.start, part.end, part.object.size) == (1000, 1010, 300_000)
    assert await collect(part.chunks) == expected(300_000)[1000:1010]


async def test_a_big_object_goes_up_in_parts(storage, request):
    total = 12 * MIB  # three parts of 5 MiB
    stored = await storage.put("notes/r1/big.bin", chunks(total, size=MIB))
    assert stored.size == total
    assert await collect((await storage.open("notes/r1/big.bin")).chunks) == expected(total)
    if storage.kind == "s3":
        # S3 names a multipart upload's ETag by its part count.
        assert stored.etag.strip('"').endswith("-3")


async def test_a_write_whose_source_fails_leaves_nothing(storage, request):
    with pytest.raises(Refused):
        await storage.put("notes/r1/broken.bin", chunks(12 * MIB, size=MIB, fail_after=7 * MIB))
    assert await storage.head("notes/r1/broken.bin") is None
    assert list(storage.list_sync("notes/r1")) == []
    if storage.kind == "s3":
        # No hidden, half-uploaded parts either: the multipart upload was aborted.
        s3 = request.getfixturevalue("s3_server")
        bucket = storage.where.removeprefix("s3://").split("/")[0]
        assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_a_missing_object_is_none_and_deleting_it_is_done(storage):
    assert await storage.head("notes/nothing") is None
    with pytest.raises(FileNotFoundError):
        await storage.open("notes/nothing")
    await storage.delete(["notes/nothing"])
    storage.delete_sync(["notes/nothing"])


async def test_deleting_a_prefix_takes_its_folder_and_nothing_beside_it(storage):
    for key in ("notes/r1/a", "notes/r1/thumbs/100x100/a", "notes/r10/b", "notes/r2/c"):
        await storage.put(key, chunks(10))
    assert storage.delete_prefix_sync("notes/r1") == 2
    assert sorted(found.key for found in storage.list_sync("notes")) == [
        "notes/r10/b",
        "notes/r2/c",
    ]
    await storage.delete(["notes/r10/b"])
    assert await storage.head("notes/r10/b") is None


async def test_s3_objects_are_encrypted_at_rest(s3_server):
    bucket = s3_server.new_bucket()
    storage = open_storage(settings_from_env({}, env="test", **s3_server.settings_for(bucket)))
    await storage.put("notes/r1/secret.txt", chunks(100))
    head = s3_server.client().head_object(Bucket=bucket, Key="notes/r1/secret.txt")
    assert head["ServerSideEncryption"] == "AES256"
