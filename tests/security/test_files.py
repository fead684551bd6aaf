"""Files under their record's rules (issue 22): who may read, add and remove a record's files.

A table of callers against a protected field (a private note's attachments), a public field
(a project's cover, served to anyone holding the URL) and file tokens: the owner, another user,
a member of another org, anonymous, a file token that expired, one narrowed to another file,
one whose session ended, and an access token where a file token belongs."""

from __future__ import annotations

import json

import pytest

from tests.files_support import PDF, png
from tests.integration.conftest import bearer, in_org

NOTES = "/collections/notes/records"


async def _in_new_org(client, sign_up, name: str):
    tokens = await sign_up()
    org = await client.post("/orgs", json={"name": name}, headers=bearer(tokens["access_token"]))
    return await in_org(client, tokens, org.json()["id"])


async def _upload(client, url, headers, field, file, data=None, method="POST"):
    response = await client.request(
        method,
        url,
        data={"data": json.dumps(data)} if data is not None else None,
        files=[(field, file)],
        headers=headers,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
async def world(client, sign_up):
    owner = await _in_new_org(client, sign_up, "Owner Inc")
    other_user = await sign_up()
    other_org = await _in_new_org(client, sign_up, "Rival Inc")
    headers = bearer(owner["access_token"])
    note = await _upload(
        client,
        NOTES,
        headers,
        "attachments",
        ("diary.pdf", PDF, "application/pdf"),
        {"title": "mine"},
    )
    second = await _upload(
        client,
        NOTES,
        headers,
        "attachments",
        ("other.pdf", PDF, "application/pdf"),
        {"title": "two"},
    )
    project = await _upload(
        client,
        "/collections/projects/records",
        headers,
        "cover",
        ("c.png", png(), "image/png"),
        {"name": "p"},
    )
    return {
        "owner": owner,
        "callers": {
            "owner": headers,
            "other user": bearer(other_user["access_token"]),
            "other org": bearer(other_org["access_token"]),
            "anonymous": {},
        },
        "note": f"/files/notes/{note['id']}/{note['attachments'][0]}",
        "second": f"/files/notes/{second['id']}/{second['attachments'][0]}",
        "note_id": note["id"],
        "cover": f"/files/projects/{project['id']}/{project['cover'][0]}",
    }


@pytest.mark.parametrize(
    ("caller", "protected", "public"),
    [
        ("owner", 200, 200),
        ("other user", 404, 200),
        ("other org", 404, 200),
        ("anonymous", 404, 200),
    ],
)
async def test_who_reads_a_protected_and_a_public_file(client, world, caller, protected, public):
    headers = world["callers"][caller]
    assert (await client.get(world["note"], headers=headers)).status_code == protected
    assert (await client.get(world["cover"], headers=headers)).status_code == public


async def test_only_who_may_update_the_record_adds_or_removes_its_files(client, world, sql):
    url = f"{NOTES}/{world['note_id']}"
    planted = [("attachments", ("planted.pdf", PDF, "application/pdf"))]
    for caller in ("other user", "other org", "anonymous"):
        headers = world["callers"][caller]
        assert (await client.patch(url, files=planted, headers=headers)).status_code == 404
        dropped = await client.patch(url, json={"attachments": []}, headers=headers)
        assert dropped.status_code in (401, 404), dropped.text
    assert len(sql("SELECT attachments FROM notes WHERE id = %s", world["note_id"])[0][0]) == 1
    assert sql("SELECT count(*) FROM stored_files WHERE NOT attached") == [(0,)]


async def test_a_file_token_reads_as_its_user_while_it_lasts(client, world, clock):
    owner = world["callers"]["owner"]
    token = (await client.post("/files/token", headers=owner)).json()
    assert token["expires_in"] == 120
    read = await client.get(world["note"], params={"token": token["token"]})
    assert read.status_code == 200 and read.content == PDF
    # Another user's token is theirs: it opens nothing of the owner's.
    theirs = (await client.post("/files/token", headers=world["callers"]["other user"])).json()
    assert (await client.get(world["note"], params={"token": theirs["token"]})).status_code == 404
    # Expired.
    clock.advance(seconds=121)
    expired = await client.get(world["note"], params={"token": token["token"]})
    assert expired.status_code == 401 and expired.json()["code"] == "token_expired"


async def test_a_file_token_narrowed_to_one_file_opens_no_other(client, world):
    owner = world["callers"]["owner"]
    collection, record, name = world["note"].split("/")[2:]
    narrowed = await client.post(
        "/files/token",
        json={"collection": collection, "record": record, "name": name},
        headers=owner,
    )
    token = narrowed.json()["token"]
    assert (await client.get(world["note"], params={"token": token})).status_code == 200
    assert (await client.get(world["second"], params={"token": token})).status_code == 404
    for wrong in ({"record": record}, {"collection": collection, "name": name}):
        refused = await client.post("/files/token", json=wrong, headers=owner)
        assert refused.status_code == 422, refused.text


async def test_a_file_token_dies_with_its_session(client, world):
    owner = world["owner"]
    headers = bearer(owner["access_token"])
    token = (await client.post("/files/token", headers=headers)).json()["token"]
    assert (await client.post("/auth/logout", headers=headers)).status_code in (200, 204)
    ended = await client.get(world["note"], params={"token": token})
    assert ended.status_code == 401, ended.text


async def test_tokens_do_not_stand_in_for_each_other(client, world):
    owner = world["owner"]
    # An access token is not a file token (so access tokens never belong in URLs)...
    as_file_token = await client.get(world["note"], params={"token": owner["access_token"]})
    assert as_file_token.status_code == 401
    # ...and a file token is not an access token.
    file_token = (await client.post("/files/token", headers=world["callers"]["owner"])).json()
    as_bearer = await client.get(f"{NOTES}/{world['note_id']}", headers=bearer(file_token["token"]))
    assert as_bearer.status_code == 401


async def test_api_keys_get_no_file_tokens_and_stay_in_their_collections(client, world):
    owner = world["callers"]["owner"]
    made = await client.post(
        "/auth/api-keys",
        json={"name": "k", "scopes": ["read"], "collections": ["projects"]},
        headers=owner,
    )
    assert made.status_code == 201, made.text
    key = bearer(made.json()["key"])
    assert (await client.post("/files/token", headers=key)).status_code == 403
    assert (await client.get(world["note"], headers=key)).status_code == 403
    assert (await client.get(world["cover"], headers=key)).status_code == 200
