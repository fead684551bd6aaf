"""The list routes outside collections page by ?limit= and ?offset=, within PAGE_MAX_LIMIT."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from tests.integration.conftest import bearer

SLEEP = {"type": "sleep", "input": {"seconds": 0}}


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, page_default_limit=2, page_max_limit=3)


async def _pages(client, path: str, headers, key=lambda item: item["id"]) -> list:
    """Every item of a list route, read three at a time."""
    seen: list = []
    while True:
        response = await client.get(path, params={"limit": 3, "offset": len(seen)}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items = body["items"] if isinstance(body, dict) else body
        seen += [key(item) for item in items]
        if len(items) < 3:
            return seen


def _refused(response) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "limit"
    assert response.json()["errors"][0]["source"] == "query"


async def test_admin_users_page_within_the_settings(client, sign_up, admin):
    for _ in range(3):
        await sign_up()
    default = (await client.get("/admin/users", headers=admin)).json()
    assert len(default["items"]) == 2 and default["total"] == 4  # PAGE_DEFAULT_LIMIT
    assert len(set(await _pages(client, "/admin/users", admin))) == 4
    _refused(await client.get("/admin/users?limit=4", headers=admin))  # over PAGE_MAX_LIMIT


async def test_my_jobs_page_newest_first(client, admin):
    me = admin  # sleep jobs are admins'
    submitted = [
        (await client.post("/jobs", json=SLEEP, headers=me)).json()["id"] for _ in range(4)
    ]
    assert len((await client.get("/jobs", headers=me)).json()) == 2
    assert await _pages(client, "/jobs", me) == submitted[::-1]
    _refused(await client.get("/jobs?limit=4", headers=me))


async def test_org_members_and_invitations_page(client, sign_up, add_member):
    owner = await sign_up()
    me = bearer(owner["access_token"])
    org = (await client.post("/orgs", json={"name": "Big"}, headers=me)).json()
    for _ in range(3):
        add_member(org["id"], (await sign_up())["user"]["id"])
        invited = await client.post(
            f"/orgs/{org['id']}/invitations",
            json={"email": f"guest-{uuid.uuid4().hex[:8]}@example.com"},
            headers=me,
        )
        assert invited.status_code == 201
    members = f"/orgs/{org['id']}/members"
    assert len((await client.get(members, headers=me)).json()) == 2
    everyone = await _pages(client, members, me, key=lambda member: member["user_id"])
    assert len(set(everyone)) == 4 and everyone[0] == owner["user"]["id"]
    assert len(set(await _pages(client, f"/orgs/{org['id']}/invitations", me))) == 3
    _refused(await client.get(f"{members}?limit=4", headers=me))


async def test_webhook_deliveries_refuse_a_page_over_the_limit(client, admin):
    _refused(await client.get(f"/webhooks/{uuid.uuid4()}/deliveries?limit=4", headers=admin))
    zero = await client.get(f"/webhooks/{uuid.uuid4()}/deliveries?limit=0", headers=admin)
    assert zero.status_code in (400, 422) and "limit" in zero.text


async def test_an_offset_past_what_postgres_counts_is_422(client, sign_up):
    me = bearer((await sign_up())["access_token"])
    response = await client.get(f"/jobs?offset={2**63}", headers=me)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "offset"
    assert (await client.get(f"/jobs?offset={2**63 - 1}", headers=me)).json() == []
