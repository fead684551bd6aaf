"""Anonymous users (issue 21.3) as an attacker uses them: made by the thousand from one
address, building what should outlive them (keys, orgs, invitations), or taking over someone
else's account through the conversion."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import msgspec
import pytest

from backend.mail.compose import MailKind
from tests.e2e.conftest import litebase_api
from tests.integration.conftest import PASSWORD, bearer, new_email
from tests.support import with_redis_db

ANONYMOUS = {"grant_type": "anonymous"}
PER_HOUR = 3


@pytest.fixture(scope="module")
def api(services, tmp_path_factory) -> Iterator[str]:
    """`litebase api` as shipped, behind the tests standing in for the load balancer."""
    with services.fresh_database() as database_url:
        env = {
            "PATH": "/usr/bin:/bin",
            "LITEBASE_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": with_redis_db(services.redis_url, 13),
            "RELAY_ENABLED": "false",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "AUTH_ANONYMOUS_ENABLED": "true",
            "AUTH_ANONYMOUS_PER_HOUR": str(PER_HOUR),
        }
        with litebase_api(env, tmp_path_factory.mktemp("anonymous") / "api.log") as base:
            yield base


def _anonymous_from(api: str, address: str) -> httpx.Response:
    return httpx.post(
        f"{api}/auth/token", json=ANONYMOUS, headers={"X-Forwarded-For": address}, timeout=10
    )


def test_one_address_makes_only_so_many_anonymous_users_an_hour(api):
    for _ in range(PER_HOUR):
        assert _anonymous_from(api, "203.0.113.7").status_code == 200
    refused = _anonymous_from(api, "203.0.113.7")
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_anonymous_users"
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    # Counted per address: another one is not held up by the first's.
    assert _anonymous_from(api, "198.51.100.9").status_code == 200


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, auth_anonymous_enabled=True)


async def _guest(client) -> dict[str, str]:
    response = await client.post("/auth/token", json=ANONYMOUS)
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def test_an_anonymous_user_builds_nothing_that_outlives_it(client, sign_up, sql):
    """Keys, orgs and invitations would outlive the idle sweep (or, for keys, act without a
    session): refused, as is everything that would mail an address it does not have."""
    guest = await _guest(client)
    owner = await sign_up()
    org = (
        await client.post("/orgs", json={"name": "Acme"}, headers=bearer(owner["access_token"]))
    ).json()
    invited = await client.post(
        f"/orgs/{org['id']}/invitations",
        json={"email": new_email("invitee"), "role": "member"},
        headers=bearer(owner["access_token"]),
    )
    assert invited.status_code == 201, invited.text
    invitation_token = "invitation-token-the-test-knows"
    sql(
        "UPDATE org_invitations SET token_hash = encode(sha256(%s::bytea), 'hex') WHERE id = %s",
        invitation_token,
        invited.json()["id"],
    )
    attempts = [
        ("POST", "/auth/api-keys", {"name": "k"}),
        ("POST", "/orgs", {"name": "Guest Inc"}),
        ("POST", f"/orgs/{org['id']}/invitations", {"email": new_email(), "role": "member"}),
        ("POST", "/invitations/accept", {"token": invitation_token}),
        ("POST", "/auth/mfa/totp", {"password": PASSWORD}),
        ("POST", "/auth/email", {"new_email": new_email(), "password": PASSWORD}),
        ("POST", "/auth/verify", {}),
    ]
    for method, path, body in attempts:
        refused = await client.request(method, path, json=body, headers=guest)
        assert (refused.status_code, refused.json()["code"]) == (403, "anonymous_user"), path
    assert sql("SELECT count(*) FROM auth_api_keys") == [(0,)]
    assert sql("SELECT count(*) FROM orgs") == [(1,)]
    assert sql("SELECT count(*) FROM org_invitations") == [(1,)]
    assert sql("SELECT count(*) FROM org_members") == [(1,)]


async def test_a_guest_cannot_take_an_account_by_converting_to_its_address(
    client, sign_up, sql, queued_mail
):
    victim = await sign_up()
    email = victim["user"]["email"]
    guest = await _guest(client)
    asked = await client.post(
        "/auth/convert",
        json={"email": email.upper(), "password": "the attacker's own"},
        headers=guest,
    )
    # The same answer as for a free address (no oracle)…
    assert (asked.status_code, asked.json()) == (202, {"status": "check_your_mail"})
    # …but no token for it exists, the guest stays a guest, and the owner is told.
    assert sql("SELECT count(*) FROM auth_email_tokens WHERE new_email ILIKE %s", email) == [(0,)]
    me = (await client.get("/auth/me", headers=guest)).json()
    assert (me["email"], me["is_anonymous"]) == (None, True)
    told = [m for m in queued_mail() if m.to == email]
    # (the confirmation is the victim's own sign-up's: none went out for the guest)
    assert sorted(m.kind for m in told) == [MailKind.ACCOUNT_EXISTS, MailKind.VERIFY_EMAIL]
    as_attacker = {"grant_type": "password", "email": email, "password": "the attacker's own"}
    assert (await client.post("/auth/token", json=as_attacker)).status_code == 401
    as_owner = {"grant_type": "password", "email": email, "password": PASSWORD}
    assert (await client.post("/auth/token", json=as_owner)).status_code == 200


async def test_a_pending_conversion_dies_when_the_address_is_taken_meanwhile(client, sign_up, sql):
    guest = await _guest(client)
    email = new_email("contested")
    asked = await client.post(
        "/auth/convert", json={"email": email, "password": PASSWORD}, headers=guest
    )
    assert asked.status_code == 202
    user_id = (await client.get("/auth/me", headers=guest)).json()["id"]
    token = "conversion-token-the-test-knows"
    sql(
        "UPDATE auth_email_tokens SET token_hash = encode(sha256(%s::bytea), 'hex')"
        " WHERE user_id = %s AND purpose = 'email_change'",
        token,
        user_id,
    )
    await sign_up(email)  # someone else signs up with it before the guest confirms
    confirmed = await client.post("/auth/email/confirm", json={"token": token})
    assert (confirmed.status_code, confirmed.json()["code"]) == (409, "email_taken")
    assert sql("SELECT email, is_anonymous FROM users WHERE id = %s", user_id) == [(None, True)]
