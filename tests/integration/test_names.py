"""Names people give things (themselves, orgs, API keys): a blank one is a 422 naming `name`
and changes nothing; a good one is saved without its surrounding whitespace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import PASSWORD, bearer, new_email

# (method, path, body with the name to try, what lists what was saved)
ROUTES: list[tuple[str, str, dict[str, Any], str]] = [
    ("POST", "/orgs", {}, "/orgs"),
    ("POST", "/auth/api-keys", {}, "/auth/api-keys"),
    ("PATCH", "/auth/me", {}, "/auth/me"),
    ("POST", "/auth/signup", {"password": PASSWORD}, ""),
]
BLANKS = [" ", "\t\n", "\u00a0\u3000"]


def _is_list(answer: Any) -> bool:
    return "items" in answer


def _saved_names(answer: Any) -> list[str | None]:
    """The names in a list's page, or the one name of a single thing."""
    return [item["name"] for item in answer["items"]] if _is_list(answer) else [answer["name"]]


@pytest.mark.parametrize("blank", BLANKS, ids=["space", "tab-newline", "unicode-spaces"])
@pytest.mark.parametrize(("method", "path", "body", "listing"), ROUTES, ids=[r[1] for r in ROUTES])
async def test_a_blank_name_is_a_422_naming_it(
    client, sign_up, sql, method, path, body, listing, blank
):
    headers = bearer((await sign_up(name="Ada"))["access_token"])
    users = sql("SELECT count(*) FROM users")
    payload = {**body, "name": blank}
    if path == "/auth/signup":
        payload["email"] = new_email()
    response = await client.request(method, path, json=payload, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"] == [
        {"field": "name", "message": "must not be blank", "source": "body"}
    ]
    if listing:
        saved = (await client.get(listing, headers=headers)).json()
        assert _saved_names(saved) == ([] if _is_list(saved) else ["Ada"])
    assert sql("SELECT count(*) FROM users") == users


@pytest.mark.parametrize(("method", "path", "body", "listing"), ROUTES, ids=[r[1] for r in ROUTES])
async def test_a_name_is_saved_trimmed(client, sign_up, method, path, body, listing):
    headers = bearer((await sign_up())["access_token"])
    payload = {**body, "name": "  Ada Lovelace\n"}
    if path == "/auth/signup":
        payload["email"] = new_email()
    response = await client.request(method, path, json=payload, headers=headers)
    assert response.status_code in (200, 201), response.text
    if listing:
        assert _saved_names((await client.get(listing, headers=headers)).json()) == ["Ada Lovelace"]
    else:
        assert response.json()["user"]["name"] == "Ada Lovelace"
