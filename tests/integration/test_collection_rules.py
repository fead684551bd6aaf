"""The rule matrix: 2 users in 2 orgs and an anonymous caller, against every route of every
example collection. The expectations come from a plain-Python oracle of each collection's
rules, written apart from the rule compilers; any leak or wrong refusal fails the test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.conftest import PASSWORD, bearer, new_email


@dataclass
class Actor:
    name: str
    headers: dict[str, str]
    user_id: str | None
    org_id: str | None


def _can_view(collection: str, actor: Actor, record: dict[str, Any]) -> bool:
    if collection == "notes":
        return record["public"] or (actor.user_id is not None and record["owner"] == actor.user_id)
    return actor.org_id is not None and record["org"] == actor.org_id


def _can_change(collection: str, actor: Actor, record: dict[str, Any]) -> bool:
    if collection in ("notes", "messages"):
        return actor.user_id is not None and record["owner"] == actor.user_id
    return actor.org_id is not None and record["org"] == actor.org_id


async def _actor(client, sign_up, name: str) -> Actor:
    tokens = await sign_up(new_email(name))
    org = (
        await client.post(
            "/orgs", json={"name": f"{name}'s org"}, headers=bearer(tokens["access_token"])
        )
    ).json()
    signed_in = (
        await client.post(
            "/auth/token",
            json={"grant_type": "password", "email": tokens["user"]["email"], "password": PASSWORD},
        )
    ).json()
    return Actor(name, bearer(signed_in["access_token"]), tokens["user"]["id"], org["id"])


async def _create(client, actor: Actor, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        f"/collections/{collection}/records", json=body, headers=actor.headers
    )
    assert response.status_code == 201, (actor.name, collection, response.text)
    return response.json()


@pytest.fixture
async def world(client, sign_up):
    alice = await _actor(client, sign_up, "alice")
    bob = await _actor(client, sign_up, "bob")
    anonymous = Actor("anonymous", {}, None, None)
    records: dict[str, list[dict[str, Any]]] = {
        "notes": [],
        "projects": [],
        "tasks": [],
        "messages": [],
    }
    for actor in (alice, bob):
        records["notes"].append(await _create(client, actor, "notes", {"title": "private"}))
        records["notes"].append(
            await _create(client, actor, "notes", {"title": "shared", "public": True})
        )
        project = await _create(client, actor, "projects", {"name": f"{actor.name}'s project"})
        records["projects"].append(project)
        records["tasks"].append(
            await _create(client, actor, "tasks", {"project": project["id"], "title": "t"})
        )
        records["messages"].append(
            await _create(client, actor, "messages", {"room": "lobby", "body": "hi"})
        )
    return [alice, bob, anonymous], records


CHANGES = {
    "notes": {"body": "changed"},
    "projects": {"description": "changed"},
    "tasks": {"status": "doing"},
    "messages": {"body": "changed"},
}


async def test_no_route_leaks_a_record_or_refuses_a_rightful_caller(client, world):
    actors, records = world
    checked = 0
    for collection, rows in records.items():
        url = f"/collections/{collection}/records"
        for actor in actors:
            listed = await client.get(url, params={"limit": 500}, headers=actor.headers)
            assert listed.status_code == 200
            expected = {r["id"] for r in rows if _can_view(collection, actor, r)}
            assert {r["id"] for r in listed.json()["items"]} == expected, (collection, actor.name)
            for record in rows:
                visible = _can_view(collection, actor, record)
                allowed = visible and _can_change(collection, actor, record)
                view = await client.get(f"{url}/{record['id']}", headers=actor.headers)
                assert view.status_code == (200 if visible else 404), (
                    collection,
                    actor.name,
                    record,
                )
                if not visible:
                    assert record["id"] not in view.text
                change = await client.patch(
                    f"{url}/{record['id']}", json=CHANGES[collection], headers=actor.headers
                )
                assert change.status_code == (200 if allowed else 403 if visible else 404), (
                    collection,
                    actor.name,
                    change.text,
                )
                if not allowed:
                    refused = await client.delete(f"{url}/{record['id']}", headers=actor.headers)
                    assert refused.status_code == (403 if visible else 404)
                    checked += 1
                # A filter cannot pry a hidden record loose either.
                probe = await client.get(
                    url, params={"filter": f"id = '{record['id']}'"}, headers=actor.headers
                )
                assert len(probe.json()["items"]) == (1 if visible else 0)
                checked += 3
    assert checked > 100
    # Every refused delete left its record; the rightful ones succeed.
    for collection, rows in records.items():
        for record in rows:
            owner = next(a for a in actors if a.user_id == record["owner"])
            response = await client.delete(
                f"/collections/{collection}/records/{record['id']}", headers=owner.headers
            )
            assert response.status_code in (204, 404)  # tasks go with their project


@pytest.mark.parametrize(
    ("collection", "body"),
    [
        ("notes", {"title": "x"}),
        ("projects", {"name": "x"}),
        ("messages", {"room": "r", "body": "x"}),
    ],
)
async def test_anonymous_and_org_less_creates_are_refused(client, sign_up, collection, body):
    anonymous = await client.post(f"/collections/{collection}/records", json=body)
    assert anonymous.status_code == 403
    lone = await sign_up()
    response = await client.post(
        f"/collections/{collection}/records", json=body, headers=bearer(lone["access_token"])
    )
    assert response.status_code == (201 if collection == "notes" else 403)


async def test_the_server_sets_owner_and_org(client, world):
    (alice, _bob, _anon), records = world
    project = next(p for p in records["projects"] if p["owner"] == alice.user_id)
    assert project["org"] == alice.org_id


async def test_admins_and_service_keys_bypass_rules(client, world, sign_up, make_admin):
    _actors, records = world
    admin = await sign_up()
    make_admin(admin["user"]["id"])
    admin_tokens = (
        await client.post(
            "/auth/token",
            json={"grant_type": "password", "email": admin["user"]["email"], "password": PASSWORD},
        )
    ).json()
    key = (
        await client.post(
            "/auth/api-keys",
            json={"name": "svc", "service": True},
            headers=bearer(admin_tokens["access_token"]),
        )
    ).json()["key"]
    for headers in (bearer(admin_tokens["access_token"]), bearer(key)):
        listed = await client.get("/collections/notes/records", headers=headers)
        assert len(listed.json()["items"]) == len(records["notes"])
        private = next(n for n in records["notes"] if not n["public"])
        assert (
            await client.get(f"/collections/notes/records/{private['id']}", headers=headers)
        ).status_code == 200


async def test_an_api_key_acts_in_its_org(client, world):
    (alice, _bob, _anon), _records = world
    key = (await client.post("/auth/api-keys", json={"name": "k"}, headers=alice.headers)).json()[
        "key"
    ]
    listed = await client.get("/collections/projects/records", headers=bearer(key))
    assert [p["org"] for p in listed.json()["items"]] == [alice.org_id]


async def test_expand_brings_related_records_the_caller_may_view(client, world, sql):
    (alice, bob, _), records = world
    alices_project, bobs_project = records["projects"]
    # Alice's task pointing at Bob's project: the API refuses to write one (tests/security/
    # test_relations.py), an operator's SQL need not.
    stray = await _create(client, alice, "tasks", {"project": alices_project["id"], "title": "x"})
    sql("UPDATE tasks SET project = %s WHERE id = %s", bobs_project["id"], stray["id"])

    page = await client.get(
        "/collections/tasks/records?expand=project&sort=created_at", headers=alice.headers
    )
    assert page.status_code == 200, page.text
    expanded = {item["id"]: item["expand"]["project"] for item in page.json()["items"]}
    assert expanded[records["tasks"][0]["id"]] == alices_project
    assert expanded[stray["id"]] is None  # Bob's org: Alice can't GET it, so it isn't inlined

    one = await client.get(
        f"/collections/tasks/records/{stray['id']}?expand=project", headers=bob.headers
    )
    assert one.status_code == 404  # the task itself is Alice's org's
    mine = await client.get(
        f"/collections/tasks/records/{records['tasks'][1]['id']}?expand=project",
        headers=bob.headers,
    )
    assert mine.json()["expand"] == {"project": bobs_project}
    assert mine.json()["title"] == "t" and "etag" in {k.lower() for k in mine.headers}
    # With fields, the chosen fields and the expansion.
    slim = await client.get(
        "/collections/tasks/records?fields=id,project&expand=project", headers=bob.headers
    )
    assert slim.json()["items"] == [
        {
            "id": records["tasks"][1]["id"],
            "project": bobs_project["id"],
            "expand": {"project": bobs_project},
        }
    ]


@pytest.mark.parametrize(
    ("collection", "expand"),
    [
        ("tasks", "assignee"),
        ("tasks", "title"),
        ("tasks", "project,nope"),
        ("notes", "owner"),
    ],
)
async def test_expand_of_anything_but_a_relation_to_a_collection_is_422(
    client, world, collection, expand
):
    (alice, _, _), _ = world
    response = await client.get(
        f"/collections/{collection}/records", params={"expand": expand}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "expand"


async def test_a_blank_expand_expands_nothing(client, world):
    """Blank parts are ignored (the schema's pattern allows them): nothing to inline."""
    (alice, _, _), _ = world
    response = await client.get(
        "/collections/tasks/records", params={"expand": " , "}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert all("expand" not in item for item in response.json()["items"])
