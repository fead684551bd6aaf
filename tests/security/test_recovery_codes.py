"""Two-factor recovery codes (issue 21.4) as an attacker tries them: one code used twice (at
once, too), a code of another account, codes read from a database dump, codes guessed."""

from __future__ import annotations

import asyncio
import hashlib

import pyotp

from tests.integration.conftest import PASSWORD, bearer, new_email


async def _protected(client, sign_up, clock) -> tuple[str, list[str]]:
    email = new_email("2fa")
    me = bearer((await sign_up(email))["access_token"])
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    on = await client.post(
        "/auth/mfa/totp/enable", json={"code": pyotp.TOTP(secret).at(clock.now())}, headers=me
    )
    assert on.status_code == 200, on.text
    return email, on.json()["recovery_codes"]


async def _mfa_token(client, email: str) -> str:
    first = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )
    assert first.json()["code"] == "mfa_required", first.text
    token: str = first.json()["mfa_token"]
    return token


async def _recover(client, mfa_token: str, code: str) -> int:
    response = await client.post(
        "/auth/token",
        json={"grant_type": "mfa", "mfa_token": mfa_token, "recovery_code": code},
    )
    return response.status_code


async def test_a_code_used_twice_at_once_signs_in_once(client, sign_up, clock):
    email, codes = await _protected(client, sign_up, clock)
    tokens = [await _mfa_token(client, email) for _ in range(4)]
    answers = await asyncio.gather(*(_recover(client, token, codes[0]) for token in tokens))
    assert sorted(answers) == [200, 401, 401, 401]
    assert await _recover(client, await _mfa_token(client, email), codes[0]) == 401


async def test_another_accounts_code_is_refused(client, sign_up, clock):
    alice, alices_codes = await _protected(client, sign_up, clock)
    mallory, _ = await _protected(client, sign_up, clock)
    assert await _recover(client, await _mfa_token(client, mallory), alices_codes[0]) == 401
    # …and it is still Alice's to use.
    assert await _recover(client, await _mfa_token(client, alice), alices_codes[0]) == 200


async def test_a_database_dump_holds_no_code(client, sign_up, clock, sql):
    email, codes = await _protected(client, sign_up, clock)
    [(user_id,)] = sql("SELECT id FROM users WHERE email = %s", email)
    rows = sql("SELECT code_hash FROM auth_recovery_codes WHERE user_id = %s", user_id)
    stored = {code_hash for (code_hash,) in rows}
    assert len(stored) == 10
    for code in codes:
        bare = code.replace("-", "")
        unkeyed = {
            hashlib.sha256(text.encode()).hexdigest()
            for text in (code, bare, f"{user_id}:{code}", f"{user_id}:{bare}")
        }
        assert not ({code, bare} | unkeyed) & stored  # keyed with SECRET_KEY, never in clear


async def test_guessing_codes_counts_toward_the_sign_in_limit(client, sign_up, clock, settings):
    email, codes = await _protected(client, sign_up, clock)
    mfa_token = await _mfa_token(client, email)
    for n in range(settings.auth_failed_signin_limit):
        assert await _recover(client, mfa_token, f"aaaaa-{n:05d}") == 401
    # Past the limit even a right code waits.
    assert await _recover(client, mfa_token, codes[0]) == 429
