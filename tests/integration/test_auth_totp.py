"""Two-factor sign-in with an authenticator app: set up, turned on by a code, asked for after
the password (or a mailed code), codes used once, turned off, reset by an admin."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
import redis

from tests.integration.conftest import PASSWORD, bearer, mailed_sign_in_code, new_email


def _code(secret: str, clock, *, ahead: float = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=ahead))


async def _password_grant(client, email: str):
    return await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )


async def _mfa_grant(client, mfa_token: str, code: str):
    return await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": mfa_token, "code": code}
    )


@pytest.fixture
async def enrolled(client, sign_up, clock):
    """A user with two-factor sign-in on, their email and secret."""
    email = new_email("mfa")
    tokens = await sign_up(email)
    me = bearer(tokens["access_token"])
    wrong = await client.post("/auth/mfa/totp", json={"password": "not it"}, headers=me)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "password"
    setup = await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/")
    # Not in force until a code confirms it.
    assert (await _password_grant(client, email)).status_code == 200
    bad = await client.post("/auth/mfa/totp/enable", json={"code": "000000"}, headers=me)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "code"
    on = await client.post("/auth/mfa/totp/enable", json={"code": _code(secret, clock)}, headers=me)
    assert on.status_code == 200, on.text
    assert on.json()["totp_enabled"] is True
    return email, secret, me


async def test_the_password_alone_no_longer_signs_in(client, enrolled, clock):
    email, secret, _ = enrolled
    first = await _password_grant(client, email)
    assert first.status_code == 401
    assert first.json()["code"] == "mfa_required"
    mfa_token = first.json()["mfa_token"]
    assert "access_token" not in first.text
    assert (await _mfa_grant(client, mfa_token, "000000")).status_code == 401
    clock.advance(seconds=30)  # the enabling code's step is spent: the next one
    tokens = await _mfa_grant(client, mfa_token, _code(secret, clock))
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["user"]["totp_enabled"] is True
    # The mfa_token works once, and a code only once.
    assert (await _mfa_grant(client, mfa_token, _code(secret, clock))).status_code == 401
    again = (await _password_grant(client, email)).json()["mfa_token"]
    replay = await _mfa_grant(client, again, _code(secret, clock))
    assert (replay.status_code, replay.json()["code"]) == (401, "invalid_code")


async def test_the_mfa_step_expires(client, enrolled, clock, redis_url):
    email, secret, _ = enrolled
    mfa_token = (await _password_grant(client, email)).json()["mfa_token"]
    with redis.Redis.from_url(redis_url) as store:
        pending = list(store.scan_iter("litebase:auth:mfa-pending:*"))
        assert len(pending) == 1 and 0 < store.ttl(pending[0]) <= 300  # MFA_TOKEN_TTL_SECONDS
        store.delete(*pending)  # as the TTL will
    clock.advance(seconds=30)
    late = await _mfa_grant(client, mfa_token, _code(secret, clock))
    assert (late.status_code, late.json()["code"]) == (401, "invalid_grant")


async def test_guessing_app_codes_is_limited_like_passwords(client, enrolled, settings):
    email, _, _ = enrolled
    mfa_token = (await _password_grant(client, email)).json()["mfa_token"]
    for n in range(settings.auth_failed_signin_limit):
        assert (await _mfa_grant(client, mfa_token, f"{n:06d}")).status_code in (401, 429)
    refused = await _mfa_grant(client, mfa_token, "999999")
    assert (refused.status_code, refused.json()["code"]) == (429, "too_many_attempts")


async def test_turning_it_off_needs_a_code_and_an_admin_can_reset_it(
    client, enrolled, clock, admin
):
    email, secret, me = enrolled
    off = await client.request("DELETE", "/auth/mfa/totp", json={"code": "000000"}, headers=me)
    assert off.status_code == 422
    again = await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)
    assert (again.status_code, again.json()["code"]) == (409, "totp_enabled")
    clock.advance(seconds=30)
    off = await client.request(
        "DELETE", "/auth/mfa/totp", json={"code": _code(secret, clock)}, headers=me
    )
    assert off.status_code == 204
    assert (await _password_grant(client, email)).status_code == 200

    # On again, then reset by an admin (a lost phone).
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    clock.advance(seconds=30)
    await client.post("/auth/mfa/totp/enable", json={"code": _code(secret, clock)}, headers=me)
    assert (await _password_grant(client, email)).status_code == 401
    user_id = (await client.get("/auth/me", headers=me)).json()["id"]
    reset = await client.patch(f"/admin/users/{user_id}", json={"reset_totp": True}, headers=admin)
    assert reset.status_code == 200 and reset.json()["totp_enabled"] is False
    assert (await _password_grant(client, email)).status_code == 200


async def test_a_code_from_the_previous_step_is_accepted_once(client, enrolled, clock):
    """Clocks drift: one step either side is accepted (a step already used never is)."""
    email, secret, _ = enrolled
    clock.advance(seconds=90)
    mfa_token = (await _password_grant(client, email)).json()["mfa_token"]
    previous = _code(secret, clock, ahead=-30)
    assert (await _mfa_grant(client, mfa_token, previous)).status_code == 200


async def test_a_mailed_code_is_a_first_factor_too(client, enrolled, sql, clock):
    email, secret, me = enrolled
    user_id = (await client.get("/auth/me", headers=me)).json()["id"]
    code = await mailed_sign_in_code(client, sql, email, user_id)
    first = await client.post(
        "/auth/token", json={"grant_type": "otp", "email": email, "code": code}
    )
    assert (first.status_code, first.json()["code"]) == (401, "mfa_required")
    clock.advance(seconds=30)
    second = await _mfa_grant(client, first.json()["mfa_token"], _code(secret, clock))
    assert second.status_code == 200, second.text
