"""Resumable (tus 1.0) uploads at /files/uploads, over both storage backends (the local disk,
and S3 as moto's server on loopback speaks it): a file sent in pieces — one cut off by a client
that hangs up — is finished into its field under the multipart upload's checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import msgspec
import psycopg
import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.collections.spec import CollectionRegistry
from backend.files.cleanup import sweep_expired_uploads
from backend.files.storage import open_storage
from backend.lib.urls import libpq_database_url
from tests.files_support import HTML, PDF
from tests.integration.conftest import bearer, new_email

MIB = 1024 * 1024
UPLOADS = "/files/uploads"
NOTES = "/collections/notes/records"
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def a_pdf(size: int) -> bytes:
    """``size`` bytes that sniff as a PDF."""
    body = bytes(i % 251 for i in range(size - len(PDF)))
    return PDF + body


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.fixture(params=["local", "s3"])
def backend_settings(request, settings):
    """The test's settings on one backend; parts of 5 MiB (S3's floor) so a few MiB cross one."""
    overrides: dict[str, object] = {"files_upload_part_bytes": 5 * MIB}
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        overrides.update(s3.settings_for(s3.new_bucket()))
    return msgspec.structs.replace(settings, **overrides)


@pytest.fixture
async def api(backend_settings, clock) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(create_app(backend_settings, clock=clock)) as client:
        yield client


async def signed_up(client) -> dict[str, str]:
    answer = await client.post(
        "/auth/signup", json={"email": new_email(), "password": "a long passphrase"}
    )
    assert answer.status_code == 201, answer.text
    return bearer(answer.json()["access_token"])


async def a_note(client, headers) -> dict:
    created = await client.post(NOTES, json={"title": "for uploads"}, headers=headers)
    assert created.status_code == 201, created.text
    return created.json()


async def start(client, headers, note, length: int, filename: str = "big.pdf", **extra):
    return await client.post(
        UPLOADS,
        headers={
            **headers,
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(
                collection="notes", record=note["id"], field="attachments", filename=filename
            ),
        },
        **extra,
    )


async def send(client, headers, location: str, offset: int, data: bytes):
    return await client.patch(
        location, headers={**headers, **OCTETS, "Upload-Offset": str(offset)}, content=data
    )


def s3_leftovers(settings, s3_server) -> list[str]:
    """Unfinished multipart uploads in the bucket (none may be left behind)."""
    if settings.files_storage != "s3":
        return []
    listed = s3_server.client().list_multipart_uploads(Bucket=settings.files_s3_bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


def staged(settings) -> list[str]:
    storage = open_storage(settings)
    return [found.key for found in storage.list_sync(".uploads")]


async def test_options_say_what_the_server_speaks(client):
    answer = await client.options(UPLOADS)
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0"
    assert set(answer.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
    }
    assert int(answer.headers["tus-max-size"]) == 20 * MIB  # notes.attachments, the largest


async def test_a_file_sent_in_pieces_is_finished_into_its_field(
    api, backend_settings, sql, request
):
    alice = await signed_up(api)
    note = await a_note(api, alice)
    data = a_pdf(11 * MIB + 123)  # more than two 5 MiB parts
    # creation-with-upload: the first bytes come with the POST.
    created = await api.post(
        UPLOADS,
        headers={
            **alice,
            **OCTETS,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(
                collection="notes", record=note["id"], field="attachments",
                filename="../Big Report.PDF",
            ),
        },
        content=data[:100_000],
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.headers["upload-offset"] == "100000"
    assert created.headers["tus-resumable"] == "1.0.0" and created.headers["upload-expires"]
    location = created.headers["location"]
    assert location.startswith(f"{UPLOADS}/")

    head = await api.head(location, headers={**alice, **TUS})
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == (
        "100000",
        str(len(data)),
    )
    assert head.headers["cache-control"] == "no-store"

    middle = 6 * MIB
    sent = await send(api, alice, location, 100_000, data[100_000:middle])
    assert sent.status_code == 204, sent.text
    assert sent.headers["upload-offset"] == str(middle)
    assert "litebase-file-name" not in sent.headers
    last = await send(api, alice, location, middle, data[middle:])
    assert last.status_code == 204, last.text
    name = last.headers["litebase-file-name"]
    assert name.startswith("Big_Report_") and name.endswith(".pdf")

    # The record holds it; the bytes are the file's; the ledger has its type and SHA-256.
    record = (await api.get(f"{NOTES}/{note['id']}", headers=alice)).json()
    assert record["attachments"] == [name]
    got = await api.get(f"/files/notes/{note['id']}/{name}", headers=alice)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert got.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert sql(
        "SELECT size, content_type, sha256, attached, uploaded_by IS NOT NULL FROM stored_files"
        " WHERE record_id = %s",
        note["id"],
    ) == [(len(data), "application/pdf", hashlib.sha256(data).hexdigest(), True, True)]
    # The upload is over: nothing staged, no row, no unfinished S3 upload.
    assert (await api.head(location, headers={**alice, **TUS})).status_code == 404
    assert sql("SELECT count(*) FROM file_uploads") == [(0,)]
    assert staged(backend_settings) == []
    if backend_settings.files_storage == "s3":
        assert s3_leftovers(backend_settings, request.getfixturevalue("s3_server")) == []


async def test_a_wrong_offset_is_409_and_changes_nothing(api, backend_settings):
    alice = await signed_up(api)
    note = await a_note(api, alice)
    location = (await start(api, alice, note, 1000)).headers["location"]
    assert (await send(api, alice, location, 0, PDF)).status_code == 204
    wrong = await send(api, alice, location, 0, PDF)
    assert wrong.status_code == 409, wrong.text
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.headers["upload-offset"] == str(len(PDF))
    head = await api.head(location, headers={**alice, **TUS})
    assert head.headers["upload-offset"] == str(len(PDF))
    # Bytes past the upload's length: 413, and the upload stays where it was.
    too_many = await send(api, alice, location, len(PDF), b"x" * 1000)
    assert too_many.status_code == 413, too_many.text
    head = await api.head(location, headers={**alice, **TUS})
    assert head.headers["upload-offset"] == str(len(PDF))


async def test_an_upload_is_its_creators_alone(api, backend_settings, request):
    alice, bob = await signed_up(api), await signed_up(api)
    note = await a_note(api, alice)
    location = (await start(api, alice, note, 1000)).headers["location"]
    for method, extra in (
        ("HEAD", {}),
        ("PATCH", {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
        ("DELETE", {}),
    ):
        answer = await api.request(
            method, location, headers={**bob, **TUS, **extra}, content=PDF if extra else None
        )
        assert answer.status_code == 404, (method, answer.text)
        anonymous = await api.request(method, location, headers={**TUS, **extra})
        assert anonymous.status_code == 401, (method, anonymous.text)
    # Bob may not even start one into Alice's note (he cannot see it).
    assert (await start(api, bob, note, 1000)).status_code == 404
    head = await api.head(location, headers={**alice, **TUS})
    assert head.status_code == 200 and head.headers["upload-offset"] == "0"
    # Terminated by its creator: gone, with its staged bytes.
    assert (await send(api, alice, location, 0, PDF)).status_code == 204
    gone = await api.delete(location, headers={**alice, **TUS})
    assert gone.status_code == 204
    assert (await api.head(location, headers={**alice, **TUS})).status_code == 404
    assert staged(backend_settings) == []
    if backend_settings.files_storage == "s3":
        assert s3_leftovers(backend_settings, request.getfixturevalue("s3_server")) == []


async def test_an_upload_is_checked_as_a_multipart_one(client, sign_up, sql, settings):
    alice = bearer((await sign_up())["access_token"])
    note = await a_note(client, alice)
    # No Tus-Resumable: 412.
    bare = await client.post(UPLOADS, headers={**alice, "Upload-Length": "10"})
    assert bare.status_code == 412 and bare.headers["tus-version"] == "1.0.0"
    # Past the field's max_size (20 MB): 413 naming the field.
    big = await start(client, alice, note, 20 * MIB + 1)
    assert big.status_code == 413, big.text
    assert big.json()["errors"][0]["field"] == "attachments"
    # A field that is not a file field, a missing target: 422 naming Upload-Metadata.
    wrong = await client.post(
        UPLOADS,
        headers={
            **alice,
            **TUS,
            "Upload-Length": "10",
            "Upload-Metadata": metadata(
                collection="notes", record=note["id"], field="title", filename="a.pdf"
            ),
        },
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "Upload-Metadata"
    # The type comes from the bytes: HTML into a PDF/image field is 415, and the upload goes.
    location = (await start(client, alice, note, len(HTML) * 200, "page.pdf")).headers["location"]
    refused = await send(client, alice, location, 0, HTML * 200)
    assert refused.status_code == 415, refused.text
    assert refused.json()["errors"][0]["field"] == "attachments"
    assert (await client.head(location, headers={**alice, **TUS})).status_code == 404
    assert staged(settings) == []
    assert sql("SELECT count(*) FROM stored_files") == [(0,)]


async def test_the_update_rule_is_asked_again_at_the_finish(client, sign_up, sql, settings):
    alice = bearer((await sign_up())["access_token"])
    bob = (await sign_up())["user"]["id"]
    note = await a_note(client, alice)
    location = (await start(client, alice, note, len(PDF) + 10)).headers["location"]
    assert (await send(client, alice, location, 0, PDF)).status_code == 204
    sql("UPDATE notes SET owner = %s WHERE id = %s", bob, note["id"])  # Alice lost it
    last = await send(client, alice, location, len(PDF), b"\n" * 10)
    assert last.status_code == 404, last.text
    assert sql("SELECT attachments FROM notes WHERE id = %s", note["id"]) == [([],)]
    assert sql("SELECT count(*) FROM stored_files") == [(0,)]
    assert [o.key for o in open_storage(settings).list_sync("notes")] == []
    assert staged(settings) == []


async def test_unfinished_uploads_per_user_are_limited(settings, clock, sign_up):
    limited = msgspec.structs.replace(settings, files_resumable_max_unfinished=2)
    async with AsyncTestClient(create_app(limited, clock=clock)) as client:
        alice = await signed_up(client)
        note = await a_note(client, alice)
        assert (await start(client, alice, note, 100)).status_code == 201
        second = await start(client, alice, note, 100)
        assert second.status_code == 201
        third = await start(client, alice, note, 100)
        assert third.status_code == 429, third.text
        # Finishing or dropping one makes room.
        await client.delete(second.headers["location"], headers={**alice, **TUS})
        assert (await start(client, alice, note, 100)).status_code == 201


async def test_an_expired_upload_is_swept(api, backend_settings, sql, clock, request):
    alice = await signed_up(api)
    note = await a_note(api, alice)
    data = a_pdf(6 * MIB + 1000)  # on S3: one part sent, then a tail kept
    location = (await start(api, alice, note, len(data) + 1)).headers["location"]
    assert (await send(api, alice, location, 0, data[: 6 * MIB])).status_code == 204
    assert (await send(api, alice, location, 6 * MIB, data[6 * MIB :])).status_code == 204
    assert staged(backend_settings) != []
    if backend_settings.files_storage == "s3":
        assert s3_leftovers(backend_settings, request.getfixturevalue("s3_server")) != []

    # Past its expiry by the app's clock (and so by the database's, which runs ahead of it).
    sql("UPDATE file_uploads SET expires_at = %s", clock.now() - timedelta(seconds=1))
    assert (await api.head(location, headers={**alice, **TUS})).status_code == 404
    with psycopg.connect(
        libpq_database_url(backend_settings.database_url), autocommit=True
    ) as conn:
        assert sweep_expired_uploads(conn, open_storage(backend_settings), backend_settings) == 1
        assert sweep_expired_uploads(conn, open_storage(backend_settings), backend_settings) == 0
    assert sql("SELECT count(*) FROM file_uploads") == [(0,)]
    assert staged(backend_settings) == []
    if backend_settings.files_storage == "s3":
        assert s3_leftovers(backend_settings, request.getfixturevalue("s3_server")) == []


@asynccontextmanager
async def served(app) -> AsyncIterator[str]:
    """The app behind a real uvicorn on loopback, in this event loop: a client can hang up."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 20
    while not server.started:
        assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
        assert not task.done(), task
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_an_upload_cut_off_mid_stream_resumes_where_the_server_kept_it(
    backend_settings, clock, sql
):
    data = a_pdf(7 * MIB + 321)
    async with (
        served(create_app(backend_settings, clock=clock)) as base,
        httpx.AsyncClient(base_url=base) as client,
    ):
        alice = await signed_up(client)
        note = await a_note(client, alice)
        location = (await start(client, alice, note, len(data))).headers["location"]

        # A PATCH that announces the whole file, sends 3 MiB and hangs up.
        cut = 3 * MIB
        _, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
        writer.write(
            (
                f"PATCH {location} HTTP/1.1\r\nHost: test\r\n"
                f"Authorization: {alice['Authorization']}\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:cut]
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

        # The server keeps what arrived: HEAD says so (once the cut request has let go).
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            head = await client.head(location, headers={**alice, **TUS})
            assert head.status_code == 200
            kept = int(head.headers["upload-offset"])
            if kept == cut and sql("SELECT lease_id FROM file_uploads") == [(None,)]:
                break
            assert asyncio.get_running_loop().time() < deadline, f"offset stayed {kept}"
            await asyncio.sleep(0.05)

        rest = await send(client, alice, location, kept, data[kept:])
        assert rest.status_code == 204, rest.text
        name = rest.headers["litebase-file-name"]
        got = await client.get(f"/files/notes/{note['id']}/{name}", headers=alice)
        assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert sql("SELECT sha256 FROM stored_files") == [(hashlib.sha256(data).hexdigest(),)]
    assert staged(backend_settings) == []


def test_the_notes_field_is_what_the_limits_assume():
    spec = CollectionRegistry.discover().get("notes").file_fields["attachments"]  # type: ignore[union-attr]
    assert spec.max_size == 20 * MIB and spec.accepts("application/pdf")


async def test_an_api_keys_collections_hold_for_uploads(client, sign_up):
    alice = bearer((await sign_up())["access_token"])
    note = await a_note(client, alice)

    async def key(**limits) -> dict[str, str]:
        made = await client.post("/auth/api-keys", json={"name": "k", **limits}, headers=alice)
        assert made.status_code == 201, made.text
        return bearer(made.json()["key"])

    projects_only = await key(collections=["projects"])
    refused = await start(client, projects_only, note, len(PDF))
    assert refused.status_code == 403, refused.text
    read_only = await key(scopes=["read"])
    assert (await start(client, read_only, note, len(PDF))).status_code == 403
    # A key for notes uploads into them: its upload's own routes are not a collection's.
    notes_key = await key(collections=["notes"])
    location = (await start(client, notes_key, note, len(PDF))).headers["location"]
    assert (await client.head(location, headers={**notes_key, **TUS})).status_code == 200
    done = await send(client, notes_key, location, 0, PDF)
    assert done.status_code == 204, done.text
    assert done.headers["litebase-file-name"]
