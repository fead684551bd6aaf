"""Issue 18.7: a filter that reads a related user's email lets any caller learn, a character at
a time, the address of whoever owns each row it can list (public notes: anyone's)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"


@pytest.mark.parametrize(
    "probe", ["owner.email ~ 'a'", "owner.email = 'x@example.com'", "!(owner.name ~ 'b')"]
)
async def test_a_filter_cannot_read_a_related_users_email_or_name(client, sign_up, probe):
    owner = await sign_up()
    public = await client.post(
        NOTES, json={"title": "hello", "public": True}, headers=bearer(owner["access_token"])
    )
    assert public.status_code == 201
    prober = bearer((await sign_up())["access_token"])
    for request in (
        client.get(NOTES, params={"filter": probe}, headers=prober),
        client.get(NOTES, params={"filter": probe}),
        client.post(
            "/collections/notes/search",
            json={"query": "hello", "mode": "text", "filter": probe},
            headers=prober,
        ),
    ):
        response = await request
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "filter"


async def test_a_filter_may_still_match_a_relation_by_id(client, sign_up):
    owner = await sign_up()
    headers = bearer(owner["access_token"])
    await client.post(NOTES, json={"title": "mine"}, headers=headers)
    found = await client.get(
        NOTES, params={"filter": f"owner.id = '{owner['user']['id']}'"}, headers=headers
    )
    assert found.status_code == 200, found.text
    assert [n["title"] for n in found.json()["items"]] == ["mine"]
