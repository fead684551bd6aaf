"""The chunks of a file are visible exactly as its record is (issue 22): a PDF on a private
note is found by its owner's search and ask, and never by another user, a member of the owner's
own org, a member of another org or an anonymous caller — in any mode, with any filter that
names the record, or by asking."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from tests.files_support import pdf
from tests.integration.conftest import bearer, in_org
from tests.integration.test_document_vectors import embed_with_files

NOTES = "/collections/notes/records"
SEARCH = "/collections/notes/search"
ASK = "/collections/notes/ask"


@pytest.fixture
def settings(settings, upstream):
    return msgspec.structs.replace(
        settings,
        embedding_provider="openai",
        embedding_base_url=upstream.base_url,
        embedding_api_key="sk-test",
        embedding_model="fake-embed",
        embedding_dimensions=64,
        openai_api_key="sk-test",
        openai_base_url=upstream.base_url,
    )


async def _in_new_org(client, sign_up, name: str):
    tokens = await sign_up()
    org = await client.post("/orgs", json={"name": name}, headers=bearer(tokens["access_token"]))
    return tokens, org.json()["id"]


@pytest.fixture
async def world(client, sign_up, add_member, settings):
    owner_tokens, org_id = await _in_new_org(client, sign_up, "Owner Inc")
    owner = await in_org(client, owner_tokens, org_id)
    colleague_tokens = await sign_up()
    add_member(org_id, colleague_tokens["user"]["id"])
    colleague = await in_org(client, colleague_tokens, org_id)
    rival_tokens, rival_org = await _in_new_org(client, sign_up, "Rival Inc")
    rival = await in_org(client, rival_tokens, rival_org)
    stranger = await sign_up()
    marker = f"s{uuid.uuid4().hex[:10]}"
    created = await client.post(
        NOTES,
        data={"data": json.dumps({"title": "private"})},
        files=[
            (
                "attachments",
                (
                    "plans.pdf",
                    pdf(["cover", "intro", f"The vault code {marker} opens at midnight."]),
                    "application/pdf",
                ),
            )
        ],
        headers=bearer(owner["access_token"]),
    )
    assert created.status_code == 201, created.text
    await embed_with_files(settings)
    return {
        "marker": marker,
        "note": created.json(),
        "owner": bearer(owner["access_token"]),
        "attackers": {
            "another user": bearer(stranger["access_token"]),
            "a member of the owner's org": bearer(colleague["access_token"]),
            "a member of another org": bearer(rival["access_token"]),
            "anonymous": {},
        },
    }


async def test_the_owner_finds_the_page(client, world):
    response = await client.post(
        SEARCH, json={"query": f"vault code {world['marker']}"}, headers=world["owner"]
    )
    (hit,) = response.json()["items"]
    assert hit["record"]["id"] == world["note"]["id"] and hit["page"] == 3


@pytest.mark.parametrize(
    "who", ["another user", "a member of the owner's org", "a member of another org", "anonymous"]
)
async def test_no_one_else_finds_the_file_in_search(client, world, who):
    headers = world["attackers"][who]
    note_id = world["note"]["id"]
    tries = [
        {"query": f"vault code {world['marker']} midnight", "k": 100},
        {"query": world["marker"], "filter": f'id = "{note_id}"'},
        {"query": world["marker"], "filter": "public = false || public = true"},
    ]
    for mode in ("text", "vector", "hybrid"):
        for body in tries:
            response = await client.post(SEARCH, json={**body, "mode": mode}, headers=headers)
            assert response.status_code == 200, response.text
            chunks = json.dumps([item["chunk"] for item in response.json()["items"]])
            assert note_id not in response.text and world["marker"] not in chunks


@pytest.mark.parametrize(
    "who", ["another user", "a member of the owner's org", "a member of another org"]
)
async def test_no_one_else_gets_the_file_in_an_answer(client, world, who):
    response = await client.post(
        ASK,
        json={"question": f"What opens the vault {world['marker']}?", "k": 5},
        headers=world["attackers"][who],
    )
    assert response.status_code == 200, response.text
    citations = response.json()["citations"]
    assert world["note"]["id"] not in {c["record_id"] for c in citations}
    assert "opens at midnight" not in response.text
