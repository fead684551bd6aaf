"""Personal API keys and admin service keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.conftest import PASSWORD, bearer


async def test_a_key_is_shown_once_stored_hashed_and_works_as_a_bearer(client, sign_up, sql):
    tokens = await sign_up()
    headers = bearer(tokens["access_token"])
    created = await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("lb_") and len(secret) > 40
    listed = (await client.get("/auth/api-keys", headers=headers)).json()["items"]
    assert [k["name"] for k in listed] == ["ci"]
    assert secret not in str(listed)
    assert listed[0]["prefix"] == secret[:10]
    assert secret not in str(sql("SELECT * FROM auth_api_keys"))

    me = await client.get("/auth/me", headers=bearer(secret))
    assert me.status_code == 200
    assert me.json()["id"] == tokens["user"]["id"]
    listed = (await client.get("/auth/api-keys", headers=headers)).json()["items"]
    assert listed[0]["last_used_at"] is not None


async def test_a_revoked_key_is_refused_at_once(client, sign_up):
    tokens = await sign_up()
    headers = bearer(tokens["access_token"])
    created = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)).json()
    assert (await client.get("/auth/me", headers=bearer(created["key"]))).status_code == 200
    revoked = await client.delete(f"/auth/api-keys/{created['api_key']['id']}", headers=headers)
    assert revoked.status_code == 204
    assert (await client.get("/auth/me", headers=bearer(created["key"]))).status_code == 401
    assert (await client.get("/auth/api-keys", headers=headers)).json()["items"] == []


async def test_a_key_expires(client, sign_up, clock):
    tokens = await sign_up()
    expires_at = (clock.now() + timedelta(hours=1)).isoformat()
    created = await client.post(
        "/auth/api-keys",
        json={"name": "short", "expires_at": expires_at},
        headers=bearer(tokens["access_token"]),
    )
    key = created.json()["key"]
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 200
    clock.advance(hours=1, seconds=1)
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 401


async def test_a_key_expiring_in_the_past_is_refused(client, sign_up, clock):
    tokens = await sign_up()
    response = await client.post(
        "/auth/api-keys",
        json={"name": "x", "expires_at": (clock.now() - timedelta(seconds=1)).isoformat()},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "expires_at"


@pytest.mark.parametrize(
    "expires_at", ["2099-01-01T00:00:00", "9999-12-31T23:59:59-14:00"], ids=["naive", "past-9999"]
)
async def test_an_unusable_expiry_is_a_422_not_a_500(client, sign_up, expires_at):
    tokens = await sign_up()
    response = await client.post(
        "/auth/api-keys",
        json={"name": "x", "expires_at": expires_at},
        headers=bearer(tokens["access_token"]),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "expires_at"
    listed = await client.get("/auth/api-keys", headers=bearer(tokens["access_token"]))
    assert listed.json()["items"] == []


async def test_someone_elses_key_cannot_be_revoked(client, sign_up):
    alice, bob = await sign_up(), await sign_up()
    bobs = (
        await client.post("/auth/api-keys", json={"name": "b"}, headers=bearer(bob["access_token"]))
    ).json()
    response = await client.delete(
        f"/auth/api-keys/{bobs['api_key']['id']}", headers=bearer(alice["access_token"])
    )
    assert response.status_code == 404
    assert (await client.get("/auth/me", headers=bearer(bobs["key"]))).status_code == 200


async def test_only_admins_mint_service_keys(client, sign_up, make_admin):
    user = await sign_up()
    refused = await client.post(
        "/auth/api-keys",
        json={"name": "svc", "service": True},
        headers=bearer(user["access_token"]),
    )
    assert refused.status_code == 403

    admin = await sign_up()
    make_admin(admin["user"]["id"])
    signed_in = await client.post(
        "/auth/token",
        json={"grant_type": "password", "email": admin["user"]["email"], "password": PASSWORD},
    )
    created = await client.post(
        "/auth/api-keys",
        json={"name": "svc", "service": True},
        headers=bearer(signed_in.json()["access_token"]),
    )
    assert created.status_code == 201
    assert created.json()["api_key"]["service"] is True
    # A service key acts as its admin: it can use admin routes.
    users = await client.get("/admin/users", headers=bearer(created.json()["key"]))
    assert users.status_code == 200


async def test_a_disabled_users_keys_stop_working(client, sign_up, sql):
    tokens = await sign_up()
    key = (
        await client.post(
            "/auth/api-keys", json={"name": "k"}, headers=bearer(tokens["access_token"])
        )
    ).json()["key"]
    sql("UPDATE users SET disabled = true WHERE id = %s", tokens["user"]["id"])
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 401
