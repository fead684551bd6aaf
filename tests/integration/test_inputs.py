"""A NUL character anywhere in a request (body, query, path) is a 422 naming the field at
fault, never a 500 from Postgres, and the refused request changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import PASSWORD, bearer, new_email

NUL = "\u0000"
NOTES = "/collections/notes/records"
RECORD = "00000000-0000-0000-0000-000000000001"

# (method, path, JSON body or None, query params or None, field at fault, source)
SCENARIOS: list[tuple[str, str, Any, dict[str, str] | None, str, str]] = [
    ("POST", NOTES, {"title": f"a{NUL}b", "body": "x"}, None, "title", "body"),
    ("PATCH", f"{NOTES}/{RECORD}", {"body": f"{NUL}"}, None, "body", "body"),
    (
        "POST",
        f"{NOTES}:batch",
        {
            "operations": [
                {"op": "create", "data": {"title": "ok"}},
                {"op": "create", "data": {"title": NUL}},
            ]
        },
        None,
        "operations[1].data.title",
        "body",
    ),
    (
        "POST",
        "/collections/notes/search",
        {"query": f"lava{NUL}", "mode": "text"},
        None,
        "query",
        "body",
    ),
    ("GET", NOTES, None, {"filter": f"title = 'a{NUL}'"}, "filter", "query"),
    ("GET", NOTES, None, {"sort": f"title{NUL}"}, "sort", "query"),
    ("GET", NOTES, None, {"cursor": f"abc{NUL}"}, "cursor", "query"),
    ("GET", NOTES, None, {"fields": f"title,{NUL}"}, "fields", "query"),
    ("POST", "/jobs", {"type": "echo", "input": {"text": f"a{NUL}"}}, None, "input.text", "body"),
    ("POST", "/jobs", {"type": "echo", "input": {f"k{NUL}": 1}}, None, "input.k\\u0000", "body"),
    (
        "POST",
        "/webhooks",
        {"url": "https://example.com/hook", "collection": "notes", "description": f"d{NUL}"},
        None,
        "description",
        "body",
    ),
    ("POST", "/orgs", {"name": f"Acme{NUL}"}, None, "name", "body"),
    ("PATCH", "/auth/me", {"name": f"Al{NUL}ce"}, None, "name", "body"),
    (
        "POST",
        "/auth/token",
        {"grant_type": "refresh_token", "refresh_token": NUL},
        None,
        "refresh_token",
        "body",
    ),
    ("POST", "/invitations/accept", {"token": f"tok{NUL}en"}, None, "token", "body"),
    ("POST", "/ai/prompts/sum%00/run", {"variables": {}}, None, "name", "path"),
]


ADMINS_ONLY = {"/webhooks"}


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "field", "source"),
    SCENARIOS,
    ids=[f"{s[0]} {s[1]} {s[4]}" for s in SCENARIOS],
)
async def test_a_nul_character_is_a_422_naming_the_field(
    client, sign_up, admin, method, path, body, params, field, source
):
    # An admins-only route refuses anyone else before reading the body (admin_only guard).
    headers = admin if path in ADMINS_ONLY else bearer((await sign_up())["access_token"])
    response = await client.request(method, path, json=body, params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert "NUL" in problem["detail"]
    assert {"field": field, "source": source} in [
        {"field": e["field"], "source": e["source"]} for e in problem["errors"]
    ]


async def test_signup_with_a_nul_is_refused_and_creates_no_account(client, sql):
    email = new_email()
    response = await client.post(
        "/auth/signup", json={"email": email, "password": f"{PASSWORD}{NUL}"}
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["password"]
    assert sql("SELECT count(*) FROM users WHERE email = %s", email) == [(0,)]
    # The same account without the NUL signs up: nothing half-made was left behind.
    ok = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert ok.status_code == 201, ok.text


async def test_a_refused_batch_applies_none_of_its_operations(client, sign_up, sql):
    headers = bearer((await sign_up())["access_token"])
    operations = [
        {"op": "create", "data": {"title": "kept?"}},
        {"op": "create", "data": {"title": NUL}},
    ]
    response = await client.post(f"{NOTES}:batch", json={"operations": operations}, headers=headers)
    assert response.status_code == 422, response.text
    assert sql("SELECT count(*) FROM notes WHERE title = 'kept?'") == [(0,)]


async def test_an_escaped_backslash_before_u0000_is_plain_text(client, sign_up):
    headers = bearer((await sign_up())["access_token"])
    response = await client.post(NOTES, json={"title": "C:\\u0000", "body": "x"}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "C:\\u0000"


# What the OpenAPI document refuses, the server refuses (check_input): Litestar alone reads
# input leniently. (method, path, JSON body or None, query or None, field at fault, source)
TYPE_SCENARIOS: list[tuple[str, str, Any, dict[str, str] | None, str, str]] = [
    ("POST", NOTES, {"title": "t", "public": 0}, None, "public", "body"),
    ("POST", NOTES, {"title": 12}, None, "title", "body"),
    ("POST", "/orgs", {"name": "Acme", "extra": 1}, None, "extra", "body"),
    ("GET", "/ai/usage", None, {"from": "123"}, "from", "query"),
    ("GET", "/jobs", None, {"limit": "1.5"}, "limit", "query"),
    ("GET", NOTES, None, {"count": "1"}, "count", "query"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "field", "source"),
    TYPE_SCENARIOS,
    ids=[f"{s[0]} {s[1]} {s[4]}" for s in TYPE_SCENARIOS],
)
async def test_a_value_of_another_json_type_is_a_422_naming_the_field(
    client, sign_up, method, path, body, params, field, source
):
    headers = bearer((await sign_up())["access_token"])
    response = await client.request(method, path, json=body, params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {"field": field, "source": source} in [
        {"field": e["field"], "source": e["source"]} for e in response.json()["errors"]
    ]


async def test_a_whole_number_written_with_a_point_is_an_integer(client, sign_up):
    """JSON Schema reads 2.0 as an integer, so the server takes it where it takes 2."""
    headers = bearer((await sign_up())["access_token"])
    listed = await client.get("/jobs", params={"limit": "2"}, headers=headers)
    assert listed.status_code == 200, listed.text
    search = {"query": "lava", "mode": "text", "k": 2.0}
    response = await client.post("/collections/notes/search", json=search, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"grant_type": "password", "email": "a@example.com"}, ["password"]),
        ({"grant_type": "mfa", "mfa_token": "t"}, ["code"]),
        ({"grant_type": "refresh_token", "refresh_token": None}, ["refresh_token"]),
    ],
)
async def test_a_grant_without_its_fields_is_a_422_naming_them(client, body, missing):
    response = await client.post("/auth/token", json=body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == missing
