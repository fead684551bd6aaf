"""Every list route outside collections answers one shape, ``{items, next_cursor}``, paged by
?limit= (within PAGE_MAX_LIMIT) and an opaque ?cursor= (?offset= still read, decision 0014)."""

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
    """Every item of a list route, read three at a time by following next_cursor."""
    seen: list = []
    params: dict = {"limit": 3}
    while True:
        response = await client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [key(item) for item in body["items"]]
        if body["next_cursor"] is None:
            return seen
        assert len(body["items"]) == 3
        params = {"limit": 3, "cursor": body["next_cursor"]}


def _items(response) -> list:
    assert response.status_code == 200, response.text
    assert set(response.json()) >= {"items", "next_cursor"}
    return response.json()["items"]


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
    assert len(_items(await client.get("/jobs", headers=me))) == 2
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
    assert len(_items(await client.get(members, headers=me))) == 2
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
    assert (await client.get(f"/jobs?offset={2**63 - 1}", headers=me)).json() == {
        "items": [],
        "next_cursor": None,
    }


async def test_offset_still_pages_for_older_clients(client, admin):
    submitted = [
        (await client.post("/jobs", json=SLEEP, headers=admin)).json()["id"] for _ in range(3)
    ]
    second = await client.get("/jobs", params={"limit": 2, "offset": 1}, headers=admin)
    assert [job["id"] for job in _items(second)] == submitted[::-1][1:3]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        "e30",  # {}
        "eyJvZmZzZXQiOi0xfQ",  # {"offset": -1}
        "eyJhZnRlciI6WzFdfQ",  # {"after": [1]}: too short a key for /jobs
        "eyJhZnRlciI6WyJub3QgYSB0aW1lIiwieCJdfQ",  # {"after": ["not a time", "x"]}
        "eyJvZmZzZXQiOjEsImFmdGVyIjpbMV19",  # both
        "x" * 1001,
    ],
)
async def test_a_bad_cursor_is_422_naming_it(client, admin, cursor):
    response = await client.get("/jobs", params={"cursor": cursor}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "cursor"


async def test_a_keyset_cursor_is_no_cursor_of_an_offset_list(client, admin):
    for _ in range(3):
        await client.post("/jobs", json=SLEEP, headers=admin)
    cursor = (await client.get("/jobs", params={"limit": 1}, headers=admin)).json()["next_cursor"]
    assert (await client.get("/jobs", params={"cursor": cursor}, headers=admin)).status_code == 200
    elsewhere = await client.get("/jobs/schedules", params={"cursor": cursor}, headers=admin)
    assert elsewhere.status_code == 422 and elsewhere.json()["errors"][0]["field"] == "cursor"


async def test_an_offset_with_a_cursor_skips_past_the_cursor(client, admin):
    """Any cursor and offset the document allows together are a valid request: the offset
    skips that many more rows past the cursor's position (keyset and positional lists)."""
    for _ in range(4):
        await client.post("/jobs", json=SLEEP, headers=admin)
    for path in ("/jobs", "/auth/api-keys"):
        if path == "/auth/api-keys":
            for n in range(4):
                await client.post("/auth/api-keys", json={"name": f"k{n}"}, headers=admin)
        fourth = await client.get(path, params={"offset": 3, "limit": 1}, headers=admin)
        first = (await client.get(path, params={"limit": 1}, headers=admin)).json()
        both = await client.get(
            path, params={"cursor": first["next_cursor"], "offset": 2, "limit": 1}, headers=admin
        )
        assert both.status_code == 200, both.text
        assert both.json()["items"] == fourth.json()["items"] != []


@pytest.mark.parametrize(
    "path",
    [
        "/auth/sessions",
        "/auth/api-keys",
        "/orgs",
        "/jobs",
        "/jobs/schedules",
        "/webhooks",
        "/admin/users",
        "/ai/prompts",
        "/ai/usage",
        "/ai/budgets",
        "/ai/budgets/me",
        "/collections",
    ],
)
async def test_every_list_route_answers_one_shape(client, admin, path):
    body = (await client.get(path, headers=admin)).json()
    assert isinstance(body["items"], list) and "next_cursor" in body, body
