"""Passkeys through the API, answered by a software authenticator (tests/soft_authenticator.py)
that py_webauthn checks as it checks a browser's: register, sign in with nothing else, the
second step of two-factor sign-in, list, rename, remove; and what each refuses."""

from __future__ import annotations

import msgspec
import pyotp
import pytest
import redis
from litestar.testing import AsyncTestClient

from backend.app import create_app
from tests.integration.conftest import (
    PASSWORD,
    bearer,
    new_email,
    passkey_assertion,
    registered_passkey,
)
from tests.soft_authenticator import SoftAuthenticator, b64url


async def _passkey_grant(client, credential, **extra):
    return await client.post(
        "/auth/token", json={"grant_type": "passkey", "credential": credential, **extra}
    )


async def _password_grant(client, email: str):
    return await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )


async def test_register_sign_in_rename_and_remove(client, sign_up, clock):
    tokens = await sign_up(name="Ada")
    me = bearer(tokens["access_token"])
    phone = SoftAuthenticator()
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    public_key = options["publicKey"]
    assert public_key["rp"] == {"id": "localhost", "name": "Litebase"}
    assert public_key["user"]["name"] == tokens["user"]["email"]
    assert public_key["user"]["displayName"] == "Ada"
    assert public_key["authenticatorSelection"]["residentKey"] == "required"
    assert public_key["authenticatorSelection"]["userVerification"] == "required"
    made = await client.post(
        "/auth/passkeys",
        json={"credential": phone.create(public_key), "name": "  My phone "},
        headers=me,
    )
    assert made.status_code == 201, made.text
    passkey = made.json()
    assert passkey["name"] == "My phone"
    assert passkey["transports"] == ["hybrid", "internal"]
    assert passkey["last_used_at"] is None
    # The next registration's options exclude it (the same authenticator twice is pointless).
    again = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    excluded = again["publicKey"]["excludeCredentials"]
    assert [c["id"] for c in excluded] == [b64url(phone.credentials[0].id)]

    # Signing in: no email, no password; the browser offers the passkeys it has for the site.
    options = (await client.post("/auth/passkeys/sign-in/options", json={})).json()["publicKey"]
    assert options["rpId"] == "localhost"
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    clock.advance(minutes=1)
    signed_in = await _passkey_grant(client, phone.get(options))
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == tokens["user"]["id"]
    assert signed_in.json()["refresh_token"].startswith("lbr_")
    listed = (await client.get("/auth/passkeys", headers=me)).json()
    assert [p["id"] for p in listed["items"]] == [passkey["id"]]
    assert listed["items"][0]["last_used_at"] is not None

    renamed = await client.patch(
        f"/auth/passkeys/{passkey['id']}", json={"name": "Work laptop"}, headers=me
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Work laptop"
    blank = await client.patch(f"/auth/passkeys/{passkey['id']}", json={"name": " "}, headers=me)
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "name"

    # The account has a password too, so its only passkey may go; then it signs in no more.
    removed = await client.delete(f"/auth/passkeys/{passkey['id']}", headers=me)
    assert removed.status_code == 204
    assert (await client.get("/auth/passkeys", headers=me)).json()["items"] == []
    gone = await _passkey_grant(client, await passkey_assertion(client, phone))
    assert (gone.status_code, gone.json()["code"]) == (401, "invalid_credentials")


async def test_a_passkey_alone_does_not_turn_two_factor_on(client, sign_up):
    tokens = await sign_up()
    await registered_passkey(client, bearer(tokens["access_token"]), SoftAuthenticator())
    assert (await _password_grant(client, tokens["user"]["email"])).status_code == 200


@pytest.fixture
async def two_factor(client, sign_up, clock):
    """A user with two-factor sign-in (TOTP) on and a passkey: their email and authenticator."""
    email = new_email("mfa")
    me = bearer((await sign_up(email))["access_token"])
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    code = pyotp.TOTP(secret).at(clock.now())
    assert (
        await client.post("/auth/mfa/totp/enable", json={"code": code}, headers=me)
    ).status_code == 200
    key = SoftAuthenticator()
    await registered_passkey(client, me, key)
    return email, key


async def test_a_passkey_completes_two_factor_sign_in(client, two_factor):
    email, key = two_factor
    first = await _password_grant(client, email)
    assert (first.status_code, first.json()["code"]) == (401, "mfa_required")
    assert first.json()["methods"] == ["totp", "passkey"]
    mfa_token = first.json()["mfa_token"]
    options = await client.post("/auth/passkeys/sign-in/options", json={"mfa_token": mfa_token})
    allowed = options.json()["publicKey"]["allowCredentials"]
    assert [c["id"] for c in allowed] == [b64url(key.credentials[0].id)]
    assert allowed[0]["transports"] == ["hybrid", "internal"]
    assertion = await passkey_assertion(client, key, mfa_token)
    # A code is not needed with a passkey, and an unknown mfa_token is still refused.
    stranger = await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": "lbm_nope", "credential": assertion}
    )
    assert (stranger.status_code, stranger.json()["code"]) == (401, "invalid_grant")
    done = await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": mfa_token, "credential": assertion}
    )
    assert done.status_code == 200, done.text
    # The mfa_token worked once.
    replay = await client.post(
        "/auth/token",
        json={
            "grant_type": "mfa",
            "mfa_token": mfa_token,
            "credential": await passkey_assertion(client, key),
        },
    )
    assert (replay.status_code, replay.json()["code"]) == (401, "invalid_grant")


async def test_passwordless_sign_in_skips_the_mfa_step_and_needs_user_verification(
    client, two_factor
):
    """A passkey that verified its user (biometrics, PIN) is two factors on its own; one that
    did not (a bare security key) is only good as the second step."""
    email, key = two_factor
    signed_in = await _passkey_grant(client, await passkey_assertion(client, key))
    assert signed_in.status_code == 200, signed_in.text
    key.verifies_user = False
    unverified = await _passkey_grant(client, await passkey_assertion(client, key))
    assert (unverified.status_code, unverified.json()["code"]) == (401, "invalid_credentials")
    assert "verif" in unverified.json()["detail"]
    mfa_token = (await _password_grant(client, email)).json()["mfa_token"]
    second_step = await client.post(
        "/auth/token",
        json={
            "grant_type": "mfa",
            "mfa_token": mfa_token,
            "credential": await passkey_assertion(client, key, mfa_token),
        },
    )
    assert second_step.status_code == 200, second_step.text


async def test_the_mfa_step_without_a_passkey(client, sign_up, clock):
    email = new_email("totp-only")
    me = bearer((await sign_up(email))["access_token"])
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()[
        "secret"
    ]
    code = pyotp.TOTP(secret).at(clock.now())
    await client.post("/auth/mfa/totp/enable", json={"code": code}, headers=me)
    first = (await _password_grant(client, email)).json()
    assert first["methods"] == ["totp"]
    options = await client.post(
        "/auth/passkeys/sign-in/options", json={"mfa_token": first["mfa_token"]}
    )
    assert (options.status_code, options.json()["code"]) == (409, "no_passkeys")
    neither = await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": first["mfa_token"]}
    )
    assert neither.status_code == 422 and neither.json()["errors"][0]["field"] == "code"
    clock.advance(seconds=30)
    code = pyotp.TOTP(secret).at(clock.now())
    totp = await client.post(
        "/auth/token", json={"grant_type": "mfa", "mfa_token": first["mfa_token"], "code": code}
    )
    assert totp.status_code == 200, totp.text


async def test_the_last_way_to_sign_in_stays(client, sign_up, sql):
    tokens = await sign_up()
    me = bearer(tokens["access_token"])
    phone, laptop = SoftAuthenticator(), SoftAuthenticator()
    first = await registered_passkey(client, me, phone, "phone")
    second = await registered_passkey(client, me, laptop, "laptop")
    sql("UPDATE users SET password_hash = NULL WHERE id = %s", tokens["user"]["id"])
    assert (await client.delete(f"/auth/passkeys/{first['id']}", headers=me)).status_code == 204
    last = await client.delete(f"/auth/passkeys/{second['id']}", headers=me)
    assert (last.status_code, last.json()["code"]) == (409, "last_sign_in_method")
    assert len((await client.get("/auth/passkeys", headers=me)).json()["items"]) == 1
    signed_in = await _passkey_grant(client, await passkey_assertion(client, laptop))
    assert signed_in.status_code == 200, signed_in.text


async def test_only_a_signed_in_session_manages_passkeys(client, sign_up):
    """A leaked API key must not become a way into the account."""
    tokens = await sign_up()
    me = bearer(tokens["access_token"])
    passkey = await registered_passkey(client, me, SoftAuthenticator())
    key = (
        await client.post(
            "/auth/api-keys", json={"name": "ci", "scopes": ["read", "write"]}, headers=me
        )
    ).json()["key"]
    for method, path in (
        ("POST", "/auth/passkeys/register/options"),
        ("PATCH", f"/auth/passkeys/{passkey['id']}"),
        ("DELETE", f"/auth/passkeys/{passkey['id']}"),
    ):
        body = {"name": "x"} if method == "PATCH" else None
        refused = await client.request(method, path, json=body, headers=bearer(key))
        assert (refused.status_code, refused.json()["code"]) == (403, "session_required"), path
    listed = await client.get("/auth/passkeys", headers=bearer(key))
    assert [p["id"] for p in listed.json()["items"]] == [passkey["id"]]
    anonymous = await client.post("/auth/passkeys/register/options")
    assert anonymous.status_code == 401


async def test_passkeys_per_user_are_capped(settings, clock, sign_up):
    capped = msgspec.structs.replace(settings, webauthn_max_passkeys_per_user=1)
    async with AsyncTestClient(create_app(capped, clock=clock)) as client:
        signed_up = await client.post(
            "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        me = bearer(signed_up.json()["access_token"])
        key = SoftAuthenticator()
        # Options asked for before the first passkey was made: the cap holds at registration.
        early = (await client.post("/auth/passkeys/register/options", headers=me)).json()
        await registered_passkey(client, me, key)
        more = await client.post("/auth/passkeys/register/options", headers=me)
        assert (more.status_code, more.json()["code"]) == (429, "too_many_passkeys")
        late = await client.post(
            "/auth/passkeys", json={"credential": key.create(early["publicKey"])}, headers=me
        )
        assert (late.status_code, late.json()["code"]) == (429, "too_many_passkeys")


async def test_a_ceremony_expires(client, sign_up, redis_url, settings):
    me = bearer((await sign_up())["access_token"])
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    with redis.Redis.from_url(redis_url) as store:
        kept = list(store.scan_iter("litebase:auth:passkey-challenge:*"))
        assert len(kept) == 1
        assert 0 < store.ttl(kept[0]) <= settings.webauthn_challenge_ttl_seconds
        store.delete(*kept)  # as the TTL will
    late = await client.post(
        "/auth/passkeys",
        json={"credential": SoftAuthenticator().create(options["publicKey"])},
        headers=me,
    )
    assert late.status_code == 422 and late.json()["errors"][0]["field"] == "credential"


async def test_a_signature_counter_that_goes_back_is_refused(client, sign_up):
    """A counter lower than the last one seen means two copies of the key exist."""
    me = bearer((await sign_up())["access_token"])
    key = SoftAuthenticator()
    await registered_passkey(client, me, key)
    for _ in range(2):
        assert (
            await _passkey_grant(client, await passkey_assertion(client, key))
        ).status_code == 200
    key.credentials[0].sign_count = 0  # the clone's counter: behind
    cloned = await _passkey_grant(client, await passkey_assertion(client, key))
    assert (cloned.status_code, cloned.json()["code"]) == (401, "invalid_credentials")
    assert "sign count" in cloned.json()["detail"]
    # A passkey that never counts (synced ones report 0 every time) is fine.
    synced = SoftAuthenticator(counting=False)
    await registered_passkey(client, me, synced)
    for _ in range(2):
        assert (
            await _passkey_grant(client, await passkey_assertion(client, synced))
        ).status_code == 200


@pytest.mark.parametrize(
    "credential",
    [
        {"id": "!!", "rawId": "!!", "type": "public-key", "response": {}},
        {"id": "AA", "rawId": "AA", "type": "secret", "response": {}},
        {
            "id": "AA",
            "rawId": "AA",
            "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "A", "signature": "AA"},
        },
    ],
)
async def test_malformed_assertions_are_refused_naming_what(client, credential):
    answer = await _passkey_grant(client, credential)
    assert answer.status_code in (401, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["errors"][0]["field"].startswith("credential")


async def test_passkeys_are_off_in_prod_until_configured(settings, clock):
    prod = msgspec.structs.replace(
        settings,
        env="prod",
        secret_key="k" * 40,
        embedding_allow_hash=True,
        app_url="https://app.example.com",
        mail_allow_console_in_prod=True,
        password_hash_memory_kib=19_456,  # prod's floor, not the suite's cheap cost
        password_hash_time_cost=2,
    )
    async with AsyncTestClient(create_app(prod, clock=clock)) as client:
        off = await client.post("/auth/passkeys/sign-in/options", json={})
        assert (off.status_code, off.json()["code"]) == (503, "passkeys_off")
        assert "WEBAUTHN_RP_ID" in off.json()["detail"]


async def test_configured_origins_only(settings, clock):
    site = msgspec.structs.replace(
        settings, webauthn_rp_id="example.com", webauthn_origins=("https://app.example.com",)
    )
    async with AsyncTestClient(create_app(site, clock=clock)) as client:
        signed_up = await client.post(
            "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        me = bearer(signed_up.json()["access_token"])
        key = SoftAuthenticator(origin="https://app.example.com")
        await registered_passkey(client, me, key)
        options = (await client.post("/auth/passkeys/sign-in/options", json={})).json()
        assert options["publicKey"]["rpId"] == "example.com"
        local = await _passkey_grant(
            client, key.get(options["publicKey"], origin="http://localhost:8000")
        )
        assert local.status_code == 401 and "origin" in local.json()["detail"]
        good = await _passkey_grant(client, await passkey_assertion(client, key))
        assert good.status_code == 200, good.text


async def test_client_data_of_the_wrong_shape_is_refused_not_a_crash(client, sign_up):
    """Only the challenge has to be right to reach the checks past it: an origin that is not a
    string there is a refusal, not a crash."""
    me = bearer((await sign_up())["access_token"])
    key = SoftAuthenticator()
    await registered_passkey(client, me, key)
    odd = await _passkey_grant(client, await passkey_assertion(client, key, origin=5))
    assert (odd.status_code, odd.json()["code"]) == (401, "invalid_credentials")
    options = (await client.post("/auth/passkeys/register/options", headers=me)).json()
    made = key.create(options["publicKey"], origin=["http://localhost:8000"])
    refused = await client.post("/auth/passkeys", json={"credential": made}, headers=me)
    assert refused.status_code == 422, refused.text
