"""Two-factor recovery codes: ten shown once when it is turned on, each good for one sign-in
(or to turn it off, or to make new ones) instead of the app's code, mailed about when used,
counted, made anew on demand, gone with two-factor sign-in."""

from __future__ import annotations

import pytest

from backend.mail.compose import MailKind
from tests.integration.conftest import PASSWORD, bearer, new_email
from tests.integration.test_auth_totp import _code, _mfa_grant, _password_grant


async def _recovery_grant(client, mfa_token: str, recovery_code: str):
    return await client.post(
        "/auth/token",
        json={"grant_type": "mfa", "mfa_token": mfa_token, "recovery_code": recovery_code},
    )


async def _mfa_token(client, email: str) -> str:
    first = await _password_grant(client, email)
    assert first.status_code == 401 and first.json()["code"] == "mfa_required", first.text
    token: str = first.json()["mfa_token"]
    return token


async def _status(client, me) -> dict:
    response = await client.get("/auth/mfa", headers=me)
    assert response.status_code == 200, response.text
    status: dict = response.json()
    return status


@pytest.fixture
async def protected(client, sign_up, clock):
    """A user with two-factor sign-in on: their email, secret, headers and recovery codes."""
    email = new_email("recovery")
    me = bearer((await sign_up(email))["access_token"])
    assert await _status(client, me) == {"totp_enabled": False, "recovery_codes_left": 0}
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    on = await client.post("/auth/mfa/totp/enable", json={"code": _code(secret, clock)}, headers=me)
    assert on.status_code == 200, on.text
    assert on.json()["totp_enabled"] is True and on.json()["email"] == email  # the user, and…
    codes: list[str] = on.json()["recovery_codes"]  # …the codes, this once
    return email, secret, me, codes


async def test_ten_distinct_codes_are_shown_once_and_counted(client, protected):
    _, _, me, codes = protected
    assert len(codes) == len(set(codes)) == 10
    assert all(len(code) == 11 and code[5] == "-" for code in codes)
    assert await _status(client, me) == {"totp_enabled": True, "recovery_codes_left": 10}
    assert "recovery_codes" not in (await client.get("/auth/me", headers=me)).json()


async def test_a_recovery_code_signs_in_once_and_is_mailed_about(client, protected, queued_mail):
    email, _, me, codes = protected
    signed_in = await _recovery_grant(client, await _mfa_token(client, email), codes[0])
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["email"] == email
    notices = [m for m in queued_mail() if m.kind == MailKind.RECOVERY_CODE_USED]
    assert [m.to for m in notices] == [email]
    assert notices[0].values["remaining"] == 9
    assert await _status(client, me) == {"totp_enabled": True, "recovery_codes_left": 9}
    again = await _recovery_grant(client, await _mfa_token(client, email), codes[0])
    assert (again.status_code, again.json()["code"]) == (401, "invalid_code")
    # Typed as people do: in capitals, without the dash.
    typed = codes[1].upper().replace("-", "")
    assert (
        await _recovery_grant(client, await _mfa_token(client, email), typed)
    ).status_code == 200


async def test_a_wrong_recovery_code_does_not_sign_in(client, protected):
    email, _, _, _ = protected
    wrong = await _recovery_grant(client, await _mfa_token(client, email), "aaaaa-aaaaa")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_code")
    malformed = await _recovery_grant(client, await _mfa_token(client, email), "not a code!")
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "recovery_code"


async def test_new_codes_replace_the_old_ones(client, protected, clock):
    email, secret, me, codes = protected
    wrong = await client.post("/auth/mfa/recovery-codes", json={"code": "000000"}, headers=me)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "code"
    neither = await client.post("/auth/mfa/recovery-codes", json={}, headers=me)
    assert neither.status_code == 422
    clock.advance(seconds=30)  # the enabling code's step is spent
    fresh = await client.post(
        "/auth/mfa/recovery-codes", json={"code": _code(secret, clock)}, headers=me
    )
    assert fresh.status_code == 200, fresh.text
    new = fresh.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(codes)
    old = await _recovery_grant(client, await _mfa_token(client, email), codes[2])
    assert old.status_code == 401
    # A recovery code proves the second factor too (a lost phone).
    again = await client.post(
        "/auth/mfa/recovery-codes", json={"recovery_code": new[0]}, headers=me
    )
    assert again.status_code == 200, again.text
    assert await _status(client, me) == {"totp_enabled": True, "recovery_codes_left": 10}


async def test_a_lost_phone_turns_two_factor_off_with_recovery_codes(client, protected):
    email, _, me, codes = protected
    tokens = (await _recovery_grant(client, await _mfa_token(client, email), codes[0])).json()
    phoneless = bearer(tokens["access_token"])
    used = await client.request(
        "DELETE", "/auth/mfa/totp", json={"recovery_code": codes[0]}, headers=phoneless
    )
    assert used.status_code == 422 and used.json()["errors"][0]["field"] == "recovery_code"
    off = await client.request(
        "DELETE", "/auth/mfa/totp", json={"recovery_code": codes[1]}, headers=phoneless
    )
    assert off.status_code == 204, off.text
    assert await _status(client, me) == {"totp_enabled": False, "recovery_codes_left": 0}
    assert (await _password_grant(client, email)).status_code == 200
    made = await client.post("/auth/mfa/recovery-codes", json={"code": "123456"}, headers=me)
    assert (made.status_code, made.json()["code"]) == (409, "totp_not_enabled")


async def test_an_admin_reset_drops_the_codes(client, protected, admin, clock, sql):
    email, _, me, codes = protected
    user_id = (await client.get("/auth/me", headers=me)).json()["id"]
    reset = await client.patch(f"/admin/users/{user_id}", json={"reset_totp": True}, headers=admin)
    assert reset.status_code == 200
    assert sql("SELECT count(*) FROM auth_recovery_codes WHERE user_id = %s", user_id) == [(0,)]
    # On again: the codes of before are not among the new ones' accepted.
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    clock.advance(seconds=30)
    await client.post("/auth/mfa/totp/enable", json={"code": _code(secret, clock)}, headers=me)
    stale = await _recovery_grant(client, await _mfa_token(client, email), codes[0])
    assert stale.status_code == 401


async def test_the_mfa_grant_still_takes_the_apps_code(client, protected, clock):
    email, secret, _, _ = protected
    clock.advance(seconds=30)
    tokens = await _mfa_grant(client, await _mfa_token(client, email), _code(secret, clock))
    assert tokens.status_code == 200, tokens.text
    missing = await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": await _mfa_token(client, email)}
    )
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "code"
