"""Records with files: multipart/form-data on create and update, streamed to storage, checked
from the bytes (type, size, count), and nothing stored when the record's write fails."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.files.storage import open_storage
from tests.files_support import HTML, PDF, png
from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"
PROJECTS = "/collections/projects/records"


@pytest.fixture
def storage(settings):
    return open_storage(settings)


@pytest.fixture
async def alice(sign_up):
    return bearer((await sign_up())["access_token"])


def _objects(storage, prefix: str = "notes") -> list[str]:
    return sorted(found.key for found in storage.list_sync(prefix))


def _data(**fields) -> dict[str, str]:
    return {"data": json.dumps(fields)}


async def _create(client, headers, files, **fields):
    return await client.post(
        NOTES, data=_data(title="with files", **fields), files=files, headers=headers
    )


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()["errors"][0]


async def test_a_create_stores_its_files_under_the_record(client, alice, storage, sql):
    picture = png()
    created = await _create(
        client,
        alice,
        [
            ("attachments", ("../../Quarterly Réport.PDF", PDF, "application/pdf")),
            # The client says PDF; the bytes say PNG: the bytes win.
            ("attachments", ("photo.pdf", picture, "application/pdf")),
        ],
        tags=["a", "b"],
    )
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["title"] == "with files" and note["tags"] == ["a", "b"]
    report, photo = note["attachments"]
    assert report.startswith("Quarterly_Report_") and report.endswith(".pdf") and "/" not in report
    assert photo.startswith("photo_") and photo.endswith(".pdf")
    assert created.headers["etag"]

    assert (await client.get(f"{NOTES}/{note['id']}", headers=alice)).json() == note
    assert _objects(storage) == sorted(f"notes/{note['id']}/{name}" for name in (report, photo))
    whole = await storage.open(f"notes/{note['id']}/{report}")
    assert b"".join([chunk async for chunk in whole.chunks]) == PDF
    rows = sql(
        "SELECT name, field, size, content_type, sha256, attached FROM stored_files"
        " WHERE record_id = %s ORDER BY size",
        note["id"],
    )
    assert sorted(rows) == sorted(
        [
            (
                report,
                "attachments",
                len(PDF),
                "application/pdf",
                hashlib.sha256(PDF).hexdigest(),
                True,
            ),
            (
                photo,
                "attachments",
                len(picture),
                "image/png",
                hashlib.sha256(picture).hexdigest(),
                True,
            ),
        ]
    )


async def test_plain_form_fields_work_without_a_data_part(client, alice):
    created = await client.post(
        NOTES,
        data={"title": "a form", "public": "true", "tags": ["x", "y"]},
        files=[("attachments", ("a.pdf", PDF, "application/pdf"))],
        headers=alice,
    )
    assert created.status_code == 201, created.text
    note = created.json()
    assert (note["title"], note["public"], note["tags"]) == ("a form", True, ["x", "y"])
    assert len(note["attachments"]) == 1


async def test_an_update_adds_files_after_those_it_keeps(client, alice, storage):
    note = (
        await _create(
            client,
            alice,
            [
                ("attachments", ("one.pdf", PDF, "application/pdf")),
                ("attachments", ("two.pdf", PDF, "application/pdf")),
            ],
        )
    ).json()
    _, two = note["attachments"]
    url = f"{NOTES}/{note['id']}"
    changed = await client.patch(
        url,
        data=_data(attachments=[two], body="more"),
        files=[("attachments", ("three.png", png(), "image/png"))],
        headers=alice,
    )
    assert changed.status_code == 200, changed.text
    kept, three = changed.json()["attachments"]
    assert kept == two and three.startswith("three_") and changed.json()["body"] == "more"

    # A stale If-Match refuses the write, and nothing it sent is kept.
    before = _objects(storage)
    stale = await client.patch(
        url,
        files=[("attachments", ("four.pdf", PDF, "application/pdf"))],
        headers={**alice, "If-Match": '"1"'},
    )
    assert stale.status_code == 412, stale.text
    assert _objects(storage) == before
    assert (await client.get(url, headers=alice)).json()["attachments"] == [two, three]


async def test_a_type_the_field_does_not_take_is_415_and_stores_nothing(
    client, alice, storage, sql
):
    # HTML that calls itself a PDF, by name and by Content-Type.
    refused = await _create(client, alice, [("attachments", ("fine.pdf", HTML, "application/pdf"))])
    error = _error(refused, 415)
    assert error["field"] == "attachments" and "text/html" in error["message"]
    assert _objects(storage) == [] and sql("SELECT count(*) FROM stored_files") == [(0,)]


async def test_a_file_over_the_fields_size_is_413(client, sign_up, sql, storage):
    owner = await sign_up()
    org = (
        await client.post("/orgs", json={"name": "acme"}, headers=bearer(owner["access_token"]))
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
    too_big = png(padding=2 * 1024 * 1024)
    refused = await client.post(
        PROJECTS,
        data=_data(name="p"),
        files=[("cover", ("c.png", too_big, "image/png"))],
        headers=headers,
    )
    assert _error(refused, 413)["field"] == "cover"
    fits = await client.post(
        PROJECTS,
        data=_data(name="p"),
        files=[("cover", ("c.png", png(), "image/png"))],
        headers=headers,
    )
    assert fits.status_code == 201, fits.text
    two = await client.post(
        PROJECTS,
        data=_data(name="p"),
        files=[("cover", ("c.png", png(), "image/png")), ("cover", ("d.png", png(), "image/png"))],
        headers=headers,
    )
    assert _error(two, 422)["field"] == "cover"
    assert _objects(storage, "projects") == [
        f"projects/{fits.json()['id']}/{fits.json()['cover'][0]}"
    ]


async def test_more_files_than_the_field_holds_is_422(client, alice, storage):
    files = [("attachments", (f"{i}.pdf", PDF, "application/pdf")) for i in range(11)]
    assert _error(await _create(client, alice, files), 422)["field"] == "attachments"
    note = (await _create(client, alice, files[:10])).json()
    more = await client.patch(f"{NOTES}/{note['id']}", files=files[:1], headers=alice)
    assert _error(more, 422)["field"] == "attachments"
    assert len(_objects(storage)) == 10


@pytest.mark.parametrize(
    ("files", "data", "status", "field"),
    [
        ([("attachments", ("e.pdf", b"", "application/pdf"))], None, 422, "attachments"),
        ([("colour", ("a.pdf", PDF, "application/pdf"))], None, 422, "colour"),
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], {"data": "{not json"}, 422, "data"),
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], {"data": "[1]"}, 422, "data"),
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], _data(title=7), 422, "title"),
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], _data(colour="red"), 422, "colour"),
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], {"title": "a\x00b"}, 422, "title"),
        (
            [("attachments", ("a.pdf", PDF, "application/pdf"))],
            _data(title="x", attachments=["a.pdf"]),
            422,
            "attachments",
        ),
        # A create without its required title: the record's write fails after the upload.
        ([("attachments", ("a.pdf", PDF, "application/pdf"))], {}, 422, "title"),
    ],
)
async def test_a_refused_body_stores_nothing(
    client, alice, storage, sql, files, data, status, field
):
    refused = await client.post(
        NOTES, data=data if data is not None else _data(title="t"), files=files, headers=alice
    )
    assert _error(refused, status)["field"] == field
    assert _objects(storage) == [] and sql("SELECT count(*) FROM stored_files") == [(0,)]


async def test_a_write_the_rules_refuse_stores_nothing(client, alice, sign_up, storage, sql):
    pdf = [("attachments", ("a.pdf", PDF, "application/pdf"))]
    # Anonymous: the create rule refuses once the record is built; its file goes too.
    assert (await _create(client, {}, pdf)).status_code == 403
    # Another user's note: hidden (404) or, when public, viewable but not theirs (403),
    # refused before any byte is stored.
    bob = bearer((await sign_up())["access_token"])
    private = (await _create(client, alice, pdf)).json()
    public = (await _create(client, alice, pdf, public=True)).json()
    stored = _objects(storage)
    assert (
        await client.patch(f"{NOTES}/{private['id']}", files=pdf, headers=bob)
    ).status_code == 404
    assert (
        await client.patch(f"{NOTES}/{public['id']}", files=pdf, headers=bob)
    ).status_code == 403
    assert _objects(storage) == stored
    assert sql("SELECT count(*) FROM stored_files WHERE NOT attached") == [(0,)]


async def test_the_whole_upload_and_its_parts_are_bounded(settings, clock, storage, sql):
    bounded = msgspec.structs.replace(settings, files_max_upload_bytes=4096, files_max_parts=3)
    async with AsyncTestClient(create_app(bounded, clock=clock)) as client:
        signed_up = await client.post(
            "/auth/signup", json={"email": "bounded@example.com", "password": "a long passphrase"}
        )
        headers = bearer(signed_up.json()["access_token"])
        big = PDF + b"%" * 5000
        assert (
            _error(await _create(client, headers, [("attachments", ("a.pdf", big, "x/y"))]), 413)[
                "field"
            ]
            == "body"
        )
        parts = [("attachments", (f"{i}.pdf", PDF, "application/pdf")) for i in range(3)]
        assert _error(await _create(client, headers, parts), 413)["field"] == "body"
        assert (await _create(client, headers, parts[:2])).status_code == 201
    assert len(_objects(storage)) == 2
    assert sql("SELECT count(*) FROM stored_files WHERE NOT attached") == [(0,)]


async def test_a_collection_without_file_fields_takes_json_only(client, alice):
    refused = await client.post(
        "/collections/messages/records",
        data=_data(room="r", body="b"),
        files=[("attachments", ("a.pdf", PDF, "application/pdf"))],
        headers=alice,
    )
    assert _error(refused, 415)["field"] == "Content-Type"


async def test_the_openapi_document_describes_the_multipart_body(client):
    document = (await client.get("/schema/openapi.json")).json()
    create = document["paths"]["/collections/notes/records"]["post"]
    multipart = create["requestBody"]["content"]["multipart/form-data"]
    assert set(multipart["schema"]["properties"]) == {"data", "attachments"}
    assert multipart["encoding"]["data"]["contentType"] == "application/json"
    assert {"413", "415"} <= set(create["responses"])
    update = document["paths"]["/collections/notes/records/{record_id}"]["patch"]
    assert "multipart/form-data" in update["requestBody"]["content"]
    messages = document["paths"]["/collections/messages/records"]["post"]
    assert list(messages["requestBody"]["content"]) == ["application/json"]
