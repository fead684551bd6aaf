"""Passkeys under attack: a replayed ceremony, someone else's passkey or challenge, a page on
another site, a forged user handle. Each answer is signed by a real (software) authenticator,
so only the server's checks stand in the way."""

from __future__ import annotations

import pyotp

from tests.integration.conftest import (
    PASSWORD,
    bearer,
    known_mailed_token,
    new_email,
    passkey_assertion,
    registered_passkey,
)
from tests.soft_authenticator import SoftAuthenticator, b64url


async def _grant(client, credential, **extra):
    grant = "mfa" if "mfa_token" in extra else "passkey"
    return await client.post(
        "/auth/token", json={"grant_type": grant, "credential": credential, **extra}
    )


async def test_a_sign_in_answer_works_once(client, sign_up):
    """Someone who captured a sign-in answer (a log, a proxy) sends it again."""
    key = SoftAuthenticator()
    await registered_passkey(client, bearer((await sign_up())["access_token"]), key)
    assertion = await passkey_assertion(client, key)
    assert (await _grant(client, assertion)).status_code == 200
    replayed = await _grant(client, assertion)
    assert (replayed.status_code, replayed.json()["code"]) == (401, "invalid_credentials")


async def test_a_registration_answer_works_once(client, sign_up):
    me = bearer((await sign_up())["access_token"])
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    made = SoftAuthenticator().create(options["publicKey"])
    assert (await client.post("/auth/passkeys", json={"credential": made}, headers=me)).is_success
    again = await client.post("/auth/passkeys", json={"credential": made}, headers=me)
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "credential"


async def test_a_wrong_answer_spends_the_challenge(client, sign_up):
    """A challenge is taken before it is checked: one guess per challenge, not many."""
    key = SoftAuthenticator()
    await registered_passkey(client, bearer((await sign_up())["access_token"]), key)
    assertion = await passkey_assertion(client, key)
    forged = {**assertion, "response": {**assertion["response"], "signature": b64url(bytes(70))}}
    assert (await _grant(client, forged)).status_code == 401
    assert (await _grant(client, assertion)).status_code == 401


async def test_another_accounts_passkey_cannot_complete_my_second_step(client, sign_up, clock):
    """The attacker has the victim's password and a passkey of their own account: the victim's
    second step still needs the victim's passkey (or app)."""
    victim_email = new_email("victim")
    victim = bearer((await sign_up(victim_email))["access_token"])
    secret = (
        await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=victim)
    ).json()["secret"]
    code = pyotp.TOTP(secret).at(clock.now())
    await client.post("/auth/mfa/totp/enable", json={"code": code}, headers=victim)
    await registered_passkey(client, victim, SoftAuthenticator())
    theirs = SoftAuthenticator()
    await registered_passkey(client, bearer((await sign_up())["access_token"]), theirs)

    step = await client.post(
        "/auth/token",
        json={"grant_type": "password", "email": victim_email, "password": PASSWORD},
    )
    mfa_token = step.json()["mfa_token"]
    # Answering the victim's options with their own passkey...
    options = await client.post("/auth/passkeys/sign-in/options", json={"mfa_token": mfa_token})
    own = theirs.get(options.json()["publicKey"], credential=theirs.credentials[0])
    refused = await _grant(client, own, mfa_token=mfa_token)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    # ...or with a passwordless sign-in of their own (a challenge for something else).
    passwordless = await passkey_assertion(client, theirs)
    refused = await _grant(client, passwordless, mfa_token=mfa_token)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    assert "access_token" not in refused.text


async def test_my_registration_challenge_is_no_use_to_anyone_else(client, sign_up):
    """Options asked for in one account, answered in another's session: the passkey would sign
    in as the wrong account (its user handle is the first one's)."""
    mine = bearer((await sign_up())["access_token"])
    theirs = bearer((await sign_up())["access_token"])
    options = (await client.post("/auth/passkeys/register/options", headers=mine)).json()
    made = SoftAuthenticator().create(options["publicKey"])
    refused = await client.post("/auth/passkeys", json={"credential": made}, headers=theirs)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "credential"
    assert (await client.get("/auth/passkeys", headers=theirs)).json()["items"] == []


async def test_a_user_handle_that_is_not_the_owners_is_refused(client, sign_up):
    key = SoftAuthenticator()
    victim = await sign_up()
    await registered_passkey(client, bearer(victim["access_token"]), key)
    key.credentials[0].user_handle = bytes(16)  # claims another user
    refused = await _grant(client, await passkey_assertion(client, key))
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")


async def test_a_page_on_another_site_is_refused(client, sign_up):
    """A phishing page relays the options to the victim's browser: the browser puts its own
    origin in what the authenticator signs, and the server refuses it."""
    me = bearer((await sign_up())["access_token"])
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    phished = SoftAuthenticator().create(options["publicKey"], origin="https://evil.example")
    refused = await client.post("/auth/passkeys", json={"credential": phished}, headers=me)
    assert refused.status_code == 422 and "origin" in refused.json()["detail"]

    key = SoftAuthenticator()
    await registered_passkey(client, me, key)
    assertion = await passkey_assertion(client, key, origin="https://evil.example")
    refused = await _grant(client, assertion)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    assert "origin" in refused.json()["detail"]
    # The same passkey from the site's own page signs in.
    assert (await _grant(client, await passkey_assertion(client, key))).status_code == 200


async def test_a_passkey_made_for_another_site_is_refused(client, sign_up):
    me = bearer((await sign_up())["access_token"])
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    elsewhere = {**options["publicKey"], "rp": {"id": "evil.example", "name": "Evil"}}
    made = SoftAuthenticator().create(elsewhere)
    refused = await client.post("/auth/passkeys", json={"credential": made}, headers=me)
    assert refused.status_code == 422 and "RP ID" in refused.json()["detail"]


async def test_a_squatters_passkey_goes_when_the_mailbox_answers(client, sign_up, sql):
    """Pre-hijacking: someone signs up with the victim's address (unverified) and adds a
    passkey; when the victim proves the mailbox is theirs, the squatter's way in ends with the
    squatter's sessions and keys."""
    squatter = await sign_up()
    squatters_key = SoftAuthenticator()
    await registered_passkey(client, bearer(squatter["access_token"]), squatters_key)
    user_id = squatter["user"]["id"]
    await client.post("/auth/verify", json={}, headers=bearer(squatter["access_token"]))
    token = known_mailed_token(sql, user_id, "verify_email")
    assert (await client.post("/auth/verify", json={"token": token})).status_code == 200
    assert sql("SELECT count(*) FROM auth_passkeys WHERE user_id = %s", user_id) == [(0,)]
    refused = await _grant(client, await passkey_assertion(client, squatters_key))
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
