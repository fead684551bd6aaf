"""Issue 18.2: API keys are re-checked on every use, die with the trust they were made under,
and carry scopes (read, write, keys) and a collection allow-list."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import PASSWORD, bearer, in_org, known_mailed_token

NOTES = "/collections/notes/records"


async def _key(client, headers, **body: Any) -> str:
    created = await client.post("/auth/api-keys", json={"name": "k", **body}, headers=headers)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def _works(client, key: str) -> bool:
    response = await client.get("/auth/me", headers=bearer(key))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def _org_with_member(client, sign_up, add_member):
    owner, member = await sign_up(), await sign_up()
    org = await client.post("/orgs", json={"name": "acme"}, headers=bearer(owner["access_token"]))
    org_id = org.json()["id"]
    add_member(org_id, member["user"]["id"])
    return owner, member, org_id


async def test_an_org_key_dies_when_its_user_leaves_the_org(client, sign_up, add_member):
    owner, member, org_id = await _org_with_member(client, sign_up, add_member)
    as_member = bearer((await in_org(client, member, org_id))["access_token"])
    key = await _key(client, as_member, org_id=org_id)
    assert await _works(client, key)
    removed = await client.delete(
        f"/orgs/{org_id}/members/{member['user']['id']}", headers=bearer(owner["access_token"])
    )
    assert removed.status_code == 204
    assert not await _works(client, key)
    assert (await client.get(NOTES, headers=bearer(key))).status_code == 401


async def test_a_key_for_the_tokens_org_needs_membership_too(client, sign_up, add_member, sql):
    """create_api_key took the org from the token without checking: a removed member whose
    access token still named the org minted a key acting in it."""
    _owner, member, org_id = await _org_with_member(client, sign_up, add_member)
    as_member = bearer((await in_org(client, member, org_id))["access_token"])
    sql("DELETE FROM org_members WHERE user_id = %s", member["user"]["id"])
    refused = await client.post("/auth/api-keys", json={"name": "k"}, headers=as_member)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_a_member"


async def test_a_service_key_works_only_while_its_user_is_an_admin(client, admin_tokens, sql):
    key = await _key(client, bearer(admin_tokens["access_token"]), service=True)
    assert await _works(client, key)
    sql("UPDATE users SET role = 'user' WHERE id = %s", admin_tokens["user"]["id"])
    assert not await _works(client, key)


async def test_a_password_reset_revokes_every_key(client, sign_up, sql):
    tokens = await sign_up()
    key = await _key(client, bearer(tokens["access_token"]))
    email, user_id = tokens["user"]["email"], tokens["user"]["id"]
    assert (await client.post("/auth/password/forgot", json={"email": email})).status_code == 202
    token = known_mailed_token(sql, user_id, "password_reset")
    reset = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": PASSWORD + "!"}
    )
    assert reset.status_code in (200, 204), reset.text
    assert not await _works(client, key)


async def test_a_disable_and_a_role_change_revoke_every_key(client, sign_up, admin):
    for change in ({"disabled": True}, {"role": "admin"}):
        tokens = await sign_up()
        key = await _key(client, bearer(tokens["access_token"]))
        user = f"/admin/users/{tokens['user']['id']}"
        assert (await client.patch(user, json=change, headers=admin)).status_code == 200
        if change.get("disabled"):  # re-enabled: the keys stay dead
            assert (
                await client.patch(user, json={"disabled": False}, headers=admin)
            ).status_code == 200
        assert not await _works(client, key), change


async def test_a_read_key_reads_searches_and_asks_but_never_writes(client, sign_up):
    headers = bearer((await sign_up())["access_token"])
    note = (await client.post(NOTES, json={"title": "mine"}, headers=headers)).json()["id"]
    read = bearer(await _key(client, headers, scopes=["read"]))
    assert (await client.get(NOTES, headers=read)).status_code == 200
    assert (await client.get(f"{NOTES}/{note}", headers=read)).status_code == 200
    searched = await client.post(
        "/collections/notes/search", json={"query": "mine", "mode": "text"}, headers=read
    )
    assert searched.status_code == 200, searched.text
    for method, url, body in (
        ("POST", NOTES, {"title": "x"}),
        ("PATCH", f"{NOTES}/{note}", {"title": "pwned"}),
        ("DELETE", f"{NOTES}/{note}", None),
        ("POST", f"{NOTES}:batch", {"operations": [{"op": "delete", "id": note}]}),
        ("POST", "/jobs", {"type": "sleep", "input": {"seconds": 1}}),
        ("DELETE", "/auth/me", {"password": PASSWORD}),
    ):
        refused = await client.request(method, url, json=body, headers=read)
        assert refused.status_code == 403, (method, url, refused.text)
        assert refused.json()["code"] == "insufficient_scope"
    assert (await client.get(f"{NOTES}/{note}", headers=headers)).json()["title"] == "mine"


async def test_a_key_limited_to_collections_reaches_no_other(client, sign_up):
    headers = bearer((await sign_up())["access_token"])
    only_notes = bearer(await _key(client, headers, collections=["notes"]))
    assert (await client.get(NOTES, headers=only_notes)).status_code == 200
    for url in ("/collections/messages/records", "/collections/projects/records"):
        refused = await client.get(url, headers=only_notes)
        assert refused.status_code == 403, url
    only_messages = bearer(await _key(client, headers, collections=["messages"]))
    searched = await client.post(
        "/collections/notes/search", json={"query": "x", "mode": "text"}, headers=only_messages
    )
    assert searched.status_code == 403
    unknown = await client.post(
        "/auth/api-keys", json={"name": "k", "collections": ["notes", "nope"]}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "collections[1]"


async def test_a_key_mints_keys_only_when_it_says_so_and_never_wider(client, sign_up):
    headers = bearer((await sign_up())["access_token"])
    plain = bearer(await _key(client, headers))
    refused = await client.post("/auth/api-keys", json={"name": "child"}, headers=plain)
    assert refused.status_code == 403
    minter = bearer(await _key(client, headers, scopes=["read", "keys"], collections=["notes"]))
    child = await client.post(
        "/auth/api-keys",
        json={"name": "child", "scopes": ["read"], "collections": ["notes"]},
        headers=minter,
    )
    assert child.status_code == 403  # a POST: minting is a write, and this key only reads
    writer = bearer(
        await _key(client, headers, scopes=["read", "write", "keys"], collections=["notes"])
    )
    for wider in ({"scopes": ["read", "write", "keys"]}, {"scopes": ["read"]}):
        response = await client.post(
            "/auth/api-keys", json={"name": "child", **wider}, headers=writer
        )
        assert response.status_code == 422, wider  # no allow-list: every collection
        assert response.json()["errors"][0]["field"] == "collections"
    narrower = await client.post(
        "/auth/api-keys",
        json={"name": "child", "scopes": ["read"], "collections": ["notes"]},
        headers=writer,
    )
    assert narrower.status_code == 201, narrower.text
    assert narrower.json()["api_key"]["scopes"] == ["read"]
