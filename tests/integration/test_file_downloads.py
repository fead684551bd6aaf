"""Downloading a record's file: streamed, with Range, ETag and Content-Disposition; public
fields without a caller; a file the record let go of is gone at once."""

from __future__ import annotations

import hashlib
import io
import json

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from PIL import Image

from backend.app import create_app
from backend.files.storage import open_storage
from tests.files_support import PDF, pdf_page, png, png_claiming
from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
async def alice(sign_up):
    return bearer((await sign_up())["access_token"])


async def _note_with(client, headers, *files):
    created = await client.post(
        NOTES,
        data={"data": json.dumps({"title": "n"})},
        files=[("attachments", file) for file in files],
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return created.json()


def _url(note, index=0, collection="notes", field="attachments") -> str:
    return f"/files/{collection}/{note['id']}/{note[field][index]}"


async def test_the_owner_downloads_a_file_whole(client, alice):
    note = await _note_with(client, alice, ("report.pdf", PDF, "application/pdf"))
    got = await client.get(_url(note), headers=alice)
    assert got.status_code == 200, got.text
    assert got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["etag"] == f'"{hashlib.sha256(PDF).hexdigest()}"'
    assert got.headers["content-length"] == str(len(PDF))
    assert got.headers["content-disposition"] == f'inline; filename="{note["attachments"][0]}"'
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["cache-control"] == "private, no-cache"

    again = await client.get(_url(note), headers={**alice, "If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    attachment = await client.get(_url(note) + "?download=true", headers=alice)
    assert attachment.headers["content-disposition"].startswith("attachment;")


async def test_head_answers_gets_headers_without_the_bytes_under_the_same_rules(
    client, alice, sign_up
):
    note = await _note_with(client, alice, ("report.pdf", PDF, "application/pdf"))
    got = await client.get(_url(note), headers=alice)
    head = await client.head(_url(note), headers=alice)
    assert head.status_code == 200 and head.content == b""
    for name in (
        "content-type",
        "content-length",
        "etag",
        "content-disposition",
        "accept-ranges",
        "cache-control",
        "x-content-type-options",
    ):
        assert head.headers[name] == got.headers[name], name
    part = await client.head(_url(note), headers={**alice, "Range": "bytes=0-3"})
    assert part.status_code == 206 and part.headers["content-length"] == "4"
    assert part.headers["content-range"] == f"bytes 0-3/{len(PDF)}"
    kept = await client.head(_url(note), headers={**alice, "If-None-Match": got.headers["etag"]})
    assert kept.status_code == 304
    # The same rules: nobody else sees a protected file, not even that it exists.
    bob = bearer((await sign_up())["access_token"])
    assert (await client.head(_url(note), headers=bob)).status_code == 404
    assert (await client.head(_url(note))).status_code == 404


RANGES = [
    ("bytes=0-3", 206, PDF[:4], f"bytes 0-3/{len(PDF)}"),
    ("bytes=10-", 206, PDF[10:], f"bytes 10-{len(PDF) - 1}/{len(PDF)}"),
    ("bytes=-6", 206, PDF[-6:], f"bytes {len(PDF) - 6}-{len(PDF) - 1}/{len(PDF)}"),
    ("bytes=5-100000", 206, PDF[5:], f"bytes 5-{len(PDF) - 1}/{len(PDF)}"),
    (f"bytes={len(PDF)}-", 416, None, f"bytes */{len(PDF)}"),
    ("bytes=0-1,4-5", 200, PDF, None),  # several ranges: the whole file
    ("lines=1-2", 200, PDF, None),
]


async def test_ranges(client, alice):
    note = await _note_with(client, alice, ("report.pdf", PDF, "application/pdf"))
    for range_, status, body, content_range in RANGES:
        got = await client.get(_url(note), headers={**alice, "Range": range_})
        assert got.status_code == status, (range_, got.text)
        if body is not None:
            assert got.content == body, range_
        assert got.headers.get("content-range") == content_range, range_


async def test_a_range_against_another_version_is_the_whole_file(client, alice):
    note = await _note_with(client, alice, ("report.pdf", PDF, "application/pdf"))
    stale = await client.get(_url(note), headers={**alice, "Range": "bytes=0-3", "If-Range": '"x"'})
    assert stale.status_code == 200 and stale.content == PDF


async def test_what_a_browser_would_run_is_a_sandboxed_download(client, alice):
    note = await _note_with(client, alice, ("drawing.svg", SVG, "image/svg+xml"))
    got = await client.get(_url(note), headers=alice)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("image/svg+xml")
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["content-security-policy"] == "sandbox"


async def test_a_public_field_is_served_without_a_caller(client, sign_up):
    owner = await sign_up()
    org = (
        await client.post("/orgs", json={"name": "o"}, headers=bearer(owner["access_token"]))
    ).json()
    switched = await client.post(
        "/auth/token",
        json={
            "grant_type": "refresh_token",
            "refresh_token": owner["refresh_token"],
            "org_id": org["id"],
        },
    )
    headers = bearer(switched.json()["access_token"])
    picture = png()
    project = (
        await client.post(
            "/collections/projects/records",
            data={"data": json.dumps({"name": "p"})},
            files=[("cover", ("cover.png", picture, "image/png"))],
            headers=headers,
        )
    ).json()
    got = await client.get(_url(project, collection="projects", field="cover"))
    assert got.status_code == 200 and got.content == picture
    assert got.headers["content-type"] == "image/png"
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_a_file_the_record_let_go_of_is_gone_at_once(client, alice):
    note = await _note_with(
        client, alice, ("a.pdf", PDF, "application/pdf"), ("b.pdf", PDF, "application/pdf")
    )
    _, second = note["attachments"]
    url = f"{NOTES}/{note['id']}"
    await client.patch(url, json={"attachments": [second]}, headers=alice)
    assert (await client.get(_url(note, 0), headers=alice)).status_code == 404
    assert (await client.get(_url(note, 1), headers=alice)).status_code == 200
    await client.delete(url, headers=alice)
    assert (await client.get(_url(note, 1), headers=alice)).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/files/nothing/00000000-0000-0000-0000-000000000000/a_0123456789.pdf",
        "/files/messages/00000000-0000-0000-0000-000000000000/a_0123456789.pdf",
        "/files/notes/00000000-0000-0000-0000-000000000000/a_0123456789.pdf",
        "/files/notes/00000000-0000-0000-0000-000000000000/..%2F..%2Fetc%2Fpasswd",
        "/files/notes/00000000-0000-0000-0000-000000000000/no-suffix.pdf",
    ],
)
async def test_what_is_not_a_stored_file_is_404(client, alice, path):
    got = await client.get(path, headers=alice)
    assert got.status_code == 404, got.text
    assert got.headers["content-type"].startswith("application/problem+json")


async def test_thumbnails_of_the_declared_sizes_are_made_once_and_kept(client, alice, settings):
    picture = png(200, 100)
    note = await _note_with(client, alice, ("wide.png", picture, "image/png"))
    url = _url(note) + "?thumb="
    square = await client.get(url + "100x100", headers=alice)
    assert square.status_code == 200, square.text
    assert square.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(square.content)).size == (100, 100)
    original = await client.get(_url(note), headers=alice)
    assert square.headers["etag"] != original.headers["etag"]
    key = f"notes/{note['id']}/thumbs/100x100/{note['attachments'][0]}"
    storage = open_storage(settings)
    assert (await storage.head(key)).size == len(square.content)
    again = await client.get(url + "100x100", headers=alice)
    assert again.content == square.content and again.headers["etag"] == square.headers["etag"]
    # Never enlarged: 640 wide is more than the picture has.
    wide = await client.get(url + "640x0", headers=alice)
    assert Image.open(io.BytesIO(wide.content)).size == (200, 100)
    refused = await client.get(url + "50x50", headers=alice)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "thumb"
    # Files of the same record the caller may not view get no thumbnail either.
    assert (await client.get(url + "100x100")).status_code == 404


async def test_a_pdfs_thumbnail_is_its_first_page(client, alice, settings):
    note = await _note_with(client, alice, ("report.pdf", pdf_page(200, 100), "application/pdf"))
    thumb = await client.get(_url(note) + "?thumb=100x100", headers=alice)
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(thumb.content)).convert("RGB")
    assert image.size == (100, 100) and image.getpixel((50, 50))[2] > 200  # the page's blue
    key = f"notes/{note['id']}/thumbs/100x100/{note['attachments'][0]}"
    assert (await open_storage(settings).head(key)).size == len(thumb.content)
    assert (await client.get(_url(note) + "?thumb=100x100")).status_code == 404  # its rules


async def test_a_thumbnail_is_never_made_of_a_bomb_or_a_broken_document(client, alice, settings):
    bomb = png_claiming(30_000, 30_000)  # 900 million pixels, in a few bytes
    note = await _note_with(
        client, alice, ("bomb.png", bomb, "image/png"), ("doc.pdf", PDF, "application/pdf")
    )
    served = await client.get(_url(note, 0) + "?thumb=100x100", headers=alice)
    assert served.status_code == 200 and served.content == bomb  # the file itself, undecoded
    document = await client.get(_url(note, 1) + "?thumb=100x100", headers=alice)
    assert document.status_code == 200 and document.content == PDF
    storage = open_storage(settings)
    assert [o.key for o in storage.list_sync(f"notes/{note['id']}/thumbs")] == []


async def test_uploads_and_downloads_work_the_same_on_s3(settings, clock, s3_server):
    bucket = s3_server.new_bucket()
    on_s3 = msgspec.structs.replace(settings, **s3_server.settings_for(bucket))
    async with AsyncTestClient(create_app(on_s3, clock=clock)) as client:
        signed_up = await client.post(
            "/auth/signup", json={"email": "s3@example.com", "password": "a long passphrase"}
        )
        headers = bearer(signed_up.json()["access_token"])
        note = await _note_with(client, headers, ("report.pdf", PDF, "application/pdf"))
        got = await client.get(_url(note), headers={**headers, "Range": "bytes=0-3"})
        assert got.status_code == 206 and got.content == PDF[:4]
        assert (await client.get(_url(note), headers=headers)).content == PDF
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"notes/{note['id']}/{note['attachments'][0]}"]
