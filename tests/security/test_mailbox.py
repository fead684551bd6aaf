"""Issue 18.4 and 18.5: what was mailed before a password change cannot undo it, and a mailbox
proof on an unverified account ends whatever its signer-up left behind (pre-hijacking)."""

from __future__ import annotations

from tests.integration.conftest import (
    PASSWORD,
    bearer,
    known_mailed_token,
    mailed_sign_in_code,
    new_email,
)

NEW_PASSWORD = PASSWORD + " again"


async def _change_password(client, tokens) -> None:
    changed = await client.patch(
        "/auth/me",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text


async def test_a_pending_email_change_dies_with_a_password_change(client, sign_up, sql):
    """Someone with a stolen session asks to move the account to their address; the owner
    changes the password; the thief's mailed link must no longer take the account."""
    tokens = await sign_up()
    asked = await client.post(
        "/auth/email",
        json={"new_email": new_email("thief"), "password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert asked.status_code == 202, asked.text
    token = known_mailed_token(sql, tokens["user"]["id"], "email_change")
    await _change_password(client, tokens)
    confirmed = await client.post("/auth/email/confirm", json={"token": token})
    assert confirmed.status_code == 400
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email"] == tokens["user"]["email"]


async def test_a_reset_mailed_before_a_password_change_cannot_undo_it(client, sign_up, sql):
    tokens = await sign_up()
    email = tokens["user"]["email"]
    assert (await client.post("/auth/password/forgot", json={"email": email})).status_code == 202
    token = known_mailed_token(sql, tokens["user"]["id"], "password_reset")
    await _change_password(client, tokens)
    reset = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": "attacker's choice!"}
    )
    assert reset.status_code == 400
    signed_in = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": NEW_PASSWORD}
    )
    assert signed_in.status_code == 200


async def test_a_sign_in_code_ends_the_squatters_session_and_keys(client, sign_up, sql):
    """The attacker signs up with the victim's address (unverified) and keeps a session and a
    key; the victim later signs in with a mailed code, proving the mailbox is theirs."""
    victim_email = new_email("victim")
    squatter = await sign_up(victim_email)
    squatter_headers = bearer(squatter["access_token"])
    key = (
        await client.post("/auth/api-keys", json={"name": "k"}, headers=squatter_headers)
    ).json()["key"]
    code = await mailed_sign_in_code(client, sql, victim_email, squatter["user"]["id"])
    victim = await client.post(
        "/auth/token", json={"grant_type": "otp", "email": victim_email, "code": code}
    )
    assert victim.status_code == 200, victim.text
    assert (await client.get("/auth/me", headers=squatter_headers)).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 401
    refreshed = await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": squatter["refresh_token"]},
    )
    assert refreshed.status_code in (400, 401)
    assert (
        await client.get("/auth/me", headers=bearer(victim.json()["access_token"]))
    ).status_code == 200


async def test_verifying_ends_every_other_session_of_an_unverified_account(client, sign_up, sql):
    email = new_email("victim")
    squatter = await sign_up(email)
    # Another session of the account confirms the verification mailed at sign-up (the link
    # opened on a second device): it is kept, the session that signed up is not.
    owner = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )
    owner_headers = bearer(owner.json()["access_token"])
    token = known_mailed_token(sql, squatter["user"]["id"], "verify_email")
    verified = await client.post("/auth/verify", json={"token": token}, headers=owner_headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    assert (
        await client.get("/auth/me", headers=bearer(squatter["access_token"]))
    ).status_code == 401
    assert (await client.get("/auth/me", headers=owner_headers)).status_code == 200
