"""Collections over HTTP: CRUD and validation, ETags, batches, lists, filters, the outbox."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"


@pytest.fixture
async def alice(sign_up):
    tokens = await sign_up()
    return bearer(tokens["access_token"])


async def _note(client, headers, **data):
    response = await client.post(NOTES, json={"title": "a note", **data}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_read_update_delete(client, alice, sign_up):
    created = await client.post(NOTES, json={"title": "First", "tags": ["x"]}, headers=alice)
    assert created.status_code == 201
    note = created.json()
    assert note["title"] == "First" and note["body"] == "" and note["public"] is False
    assert note["tags"] == ["x"]
    me = (await client.get("/auth/me", headers=alice)).json()
    assert note["owner"] == me["id"]
    assert created.headers["etag"]

    read = await client.get(f"{NOTES}/{note['id']}", headers=alice)
    assert read.json() == note
    assert read.headers["etag"] == created.headers["etag"]

    changed = await client.patch(f"{NOTES}/{note['id']}", json={"body": "text"}, headers=alice)
    assert changed.status_code == 200
    assert changed.json()["body"] == "text" and changed.json()["title"] == "First"
    assert changed.headers["etag"] != read.headers["etag"]

    assert (await client.delete(f"{NOTES}/{note['id']}", headers=alice)).status_code == 204
    assert (await client.get(f"{NOTES}/{note['id']}", headers=alice)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "x", "colour": "red"}, "colour"),
        ({"title": "x", "owner": "00000000-0000-0000-0000-000000000000"}, "owner"),
        ({"title": "x", "id": "00000000-0000-0000-0000-000000000000"}, "id"),
        ({"title": "x", "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
        ({"title": 5}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "x", "public": "yes"}, "public"),
        ({"title": "x", "tags": "a,b"}, "tags"),
        ({"body": "no title"}, "title"),
    ],
)
async def test_bad_bodies_are_422_naming_the_field(client, alice, body, field):
    response = await client.post(NOTES, json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_a_tag_longer_than_its_column_is_422_on_every_write(client, alice, sql):
    # tags is ARRAY(String(50)): each element has the limit a String(50) column has.
    long_tag = "t" * 51
    note = await _note(client, alice, tags=["ok"])
    created = await client.post(NOTES, json={"title": "x", "tags": [long_tag]}, headers=alice)
    updated = await client.patch(
        f"{NOTES}/{note['id']}", json={"tags": ["ok", long_tag]}, headers=alice
    )
    batched = await client.post(
        "/collections/notes/records:batch",
        json={
            "operations": [
                {"op": "create", "data": {"title": "new"}},
                {"op": "update", "id": note["id"], "data": {"tags": [long_tag]}},
            ]
        },
        headers=alice,
    )
    fields = []
    for response in (created, updated, batched):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        fields.append(response.json()["errors"][0]["field"])
    assert fields == ["tags[0]", "tags[1]", "operations[1].data.tags[0]"]
    assert sql("SELECT title, tags FROM notes") == [("a note", ["ok"])]
    fits = await client.patch(f"{NOTES}/{note['id']}", json={"tags": ["t" * 50]}, headers=alice)
    assert fits.status_code == 200


async def test_choices_and_relations_are_checked(client, sign_up):
    owner = await sign_up()
    headers = bearer(owner["access_token"])
    await client.post("/orgs", json={"name": "Acme"}, headers=headers)
    headers = bearer(
        (
            await client.post(
                "/auth/token",
                json={"grant_type": "refresh_token", "refresh_token": owner["refresh_token"]},
            )
        ).json()["access_token"]
    )
    project = await client.post(
        "/collections/projects/records", json={"name": "P"}, headers=headers
    )
    assert project.status_code == 201
    tasks = "/collections/tasks/records"
    bad_status = await client.post(
        tasks,
        json={"project": project.json()["id"], "title": "t", "status": "later"},
        headers=headers,
    )
    assert bad_status.status_code == 422
    assert bad_status.json()["errors"][0]["field"] == "status"
    dangling = await client.post(
        tasks,
        json={"project": "00000000-0000-0000-0000-000000000000", "title": "t"},
        headers=headers,
    )
    assert dangling.status_code == 422
    assert dangling.json()["errors"][0]["field"] == "project"
    ok = await client.post(
        tasks, json={"project": project.json()["id"], "title": "t"}, headers=headers
    )
    assert ok.status_code == 201 and ok.json()["status"] == "todo"


async def test_if_match_guards_updates_and_deletes(client, alice):
    note = await _note(client, alice)
    url = f"{NOTES}/{note['id']}"
    etag = (await client.get(url, headers=alice)).headers["etag"]
    first = await client.patch(url, json={"title": "one"}, headers={**alice, "If-Match": etag})
    assert first.status_code == 200
    stale = await client.patch(url, json={"title": "two"}, headers={**alice, "If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["etag"] == first.headers["etag"]
    assert (await client.get(url, headers=alice)).json()["title"] == "one"
    assert (await client.delete(url, headers={**alice, "If-Match": etag})).status_code == 412
    fresh = {**alice, "If-Match": first.headers["etag"]}
    assert (await client.delete(url, headers=fresh)).status_code == 204


async def test_a_batch_is_all_or_nothing(client, alice, sql):
    keep = await _note(client, alice, title="keep")
    before = sql("SELECT count(*) FROM outbox")[0][0]
    failed = await client.post(
        f"{NOTES.removesuffix('/records')}/records:batch",
        json={
            "operations": [
                {"op": "create", "data": {"title": "new"}},
                {"op": "update", "id": keep["id"], "data": {"title": "changed"}},
                {"op": "update", "id": keep["id"], "data": {"title": 42}},
            ]
        },
        headers=alice,
    )
    assert failed.status_code == 422
    assert failed.json()["errors"][0]["field"] == "operations[2].data.title"
    assert (await client.get(f"{NOTES}/{keep['id']}", headers=alice)).json()["title"] == "keep"
    assert sql("SELECT count(*) FROM notes")[0][0] == 1
    assert sql("SELECT count(*) FROM outbox")[0][0] == before

    done = await client.post(
        "/collections/notes/records:batch",
        json={
            "operations": [
                {"op": "create", "data": {"title": "new"}},
                {"op": "update", "id": keep["id"], "data": {"title": "changed"}},
                {"op": "delete", "id": keep["id"]},
            ]
        },
        headers=alice,
    )
    assert done.status_code == 200
    assert [r["op"] for r in done.json()["results"]] == ["create", "update", "delete"]
    assert sql("SELECT op FROM outbox WHERE id > %s ORDER BY id", before) == [
        ("insert",),
        ("update",),
        ("delete",),
    ]


async def test_a_batch_refused_midway_by_a_rule_applies_nothing(client, alice, sign_up, sql):
    mallory = bearer((await sign_up())["access_token"])
    theirs = await _note(client, alice, public=True)
    response = await client.post(
        "/collections/notes/records:batch",
        json={
            "operations": [
                {"op": "create", "data": {"title": "mine"}},
                {"op": "delete", "id": theirs["id"]},
            ]
        },
        headers=mallory,
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "operations[1]"
    assert sql("SELECT count(*) FROM notes") == [(1,)]


async def test_batch_size_is_limited(client, alice):
    ops = [{"op": "create", "data": {"title": f"n{i}"}} for i in range(101)]
    response = await client.post(
        "/collections/notes/records:batch", json={"operations": ops}, headers=alice
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "operations"
    assert (
        await client.post(
            "/collections/notes/records:batch", json={"operations": []}, headers=alice
        )
    ).status_code == 422


async def test_lists_filter_sort_project_and_count(client, alice):
    for title, public in (("b", True), ("a", False), ("c", True)):
        await _note(client, alice, title=title, public=public)
    listed = await client.get(NOTES, params={"sort": "title", "count": "true"}, headers=alice)
    assert [n["title"] for n in listed.json()["items"]] == ["a", "b", "c"]
    assert listed.json()["total"] == 3
    filtered = await client.get(
        NOTES, params={"filter": "public = true", "sort": "-title"}, headers=alice
    )
    assert [n["title"] for n in filtered.json()["items"]] == ["c", "b"]
    projected = await client.get(
        NOTES, params={"fields": "id,title", "sort": "title"}, headers=alice
    )
    assert [set(n) for n in projected.json()["items"]] == [{"id", "title"}] * 3
    newest_first = await client.get(NOTES, headers=alice)
    assert [n["title"] for n in newest_first.json()["items"]] == ["c", "a", "b"]


def _cursor(values: list[Any]) -> str:
    """A cursor as the API encodes one (base64url JSON), around any values."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"filter": "title ="}, "filter"),
        ({"filter": "nope = 1"}, "filter"),
        ({"filter": "title = 1"}, "filter"),
        ({"filter": "(" * 1000 + "public = true" + ")" * 1000}, "filter"),
        (
            {"filter": "title ~ '" + "x" * 60_000 + "'"},
            "filter",
        ),  # 60 KB, the most a URL carries here
        ({"sort": "nope"}, "sort"),
        ({"sort": "tags"}, "sort"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        # Well-formed cursors holding values of the wrong kind reached the driver: 500s.
        ({"cursor": _cursor([5, 5])}, "cursor"),
        ({"cursor": _cursor([None, None])}, "cursor"),
        ({"cursor": _cursor(["2026-01-01T00:00:00Z", 5])}, "cursor"),
        ({"cursor": _cursor([[1], {}])}, "cursor"),
        ({"sort": "title", "cursor": _cursor(["a\u0000", str(uuid.uuid4())])}, "cursor"),
        ({"sort": "title", "cursor": _cursor([True, str(uuid.uuid4())])}, "cursor"),
        ({"fields": "id,nope"}, "fields"),
    ],
)
async def test_bad_list_parameters_are_422(client, alice, params, field):
    response = await client.get(NOTES, params=params, headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_the_default_and_largest_page(settings, clock, sign_up, client):
    small = msgspec.structs.replace(settings, page_default_limit=2, page_max_limit=3)
    async with AsyncTestClient(create_app(small, clock=clock)) as limited:
        tokens = (
            await limited.post(
                "/auth/signup", json={"email": "pager@example.com", "password": "long enough pw"}
            )
        ).json()
        headers = bearer(tokens["access_token"])
        for i in range(4):
            await limited.post(NOTES, json={"title": f"n{i}"}, headers=headers)
        assert len((await limited.get(NOTES, headers=headers)).json()["items"]) == 2
        assert (
            len((await limited.get(NOTES, params={"limit": 3}, headers=headers)).json()["items"])
            == 3
        )
        assert (await limited.get(NOTES, params={"limit": 4}, headers=headers)).status_code == 422


async def test_cursor_pages_are_stable_while_rows_are_inserted(client, alice):
    for i in range(10):
        await _note(client, alice, title=f"old {i:02}")
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "sort": "-created_at"}
        if cursor:
            params["cursor"] = cursor
        page, _ = await asyncio.gather(
            client.get(NOTES, params=params, headers=alice),
            _note(client, alice, title="new during paging"),
        )
        body = page.json()
        seen += [n["title"] for n in body["items"] if n["title"].startswith("old")]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # Newer rows land before the cursor: every old row is seen once, in order.
    assert seen == [f"old {i:02}" for i in reversed(range(10))]


async def test_the_collections_are_described(client):
    described = {c["name"]: c for c in (await client.get("/collections")).json()["items"]}
    assert set(described) >= {"notes", "projects", "tasks", "messages"}
    title = next(f for f in described["notes"]["fields"] if f["name"] == "title")
    assert title == {**title, "kind": "text", "required": True, "max_length": 200}
    tags = next(f for f in described["notes"]["fields"] if f["name"] == "tags")
    assert tags == {**tags, "kind": "text_list", "max_length": 50}
    owner = next(f for f in described["notes"]["fields"] if f["name"] == "owner")
    assert owner["read_only"] is True and owner["relation"] == "users"
    assert described["notes"]["embed"] == ["title", "body"]


async def test_openapi_has_typed_bodies_per_collection(client):
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert {"NotesCreate", "NotesUpdate", "NotesRecord", "TasksCreate"} <= set(schemas)
    assert schemas["NotesCreate"]["properties"]["title"]["maxLength"] == 200
    assert schemas["NotesCreate"]["properties"]["tags"]["items"]["maxLength"] == 50
    assert "owner" not in schemas["NotesCreate"]["properties"]
    assert schemas["NotesCreate"]["required"] == ["title"]
    status = schemas["TasksCreate"]["properties"]["status"]
    assert "todo" in str(status)
    create = document["paths"]["/collections/notes/records"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "NotesCreate"
    )


async def test_every_committed_write_leaves_one_outbox_row_and_refusals_none(
    client, alice, sign_up, sql
):
    note = await _note(client, alice)
    await client.patch(f"{NOTES}/{note['id']}", json={"title": "b"}, headers=alice)
    await client.delete(f"{NOTES}/{note['id']}", headers=alice)
    refused = await client.post(NOTES, json={"title": "anonymous"})
    assert refused.status_code == 403
    rows = sql(
        "SELECT collection, op, record_id, record->>'title', old->>'title' FROM outbox ORDER BY id"
    )
    assert rows == [
        ("notes", "insert", note["id"], "a note", None),
        ("notes", "update", note["id"], "b", "a note"),
        ("notes", "delete", note["id"], None, "b"),
    ]
