"""Sign-up, sign-in, /auth/me, and the abuse limits on them."""

from __future__ import annotations

import jwt
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.auth.secrets import Passwords, hash_token, new_token
from tests.integration.conftest import PASSWORD, bearer, mailed_sign_in_code, new_email

PROBLEM = "application/problem+json"


async def test_sign_up_returns_an_oauth2_token_response(client, settings):
    email = new_email()
    response = await client.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "name": "Ada"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"].startswith("lbr_")
    assert body["user"]["email"] == email
    assert body["user"]["name"] == "Ada"
    assert body["user"]["role"] == "user"
    assert body["user"]["email_verified"] is False
    assert body["user"]["id"][14] == "7"  # a UUIDv7
    claims = jwt.decode(
        body["access_token"], settings.secret_key, algorithms=["HS256"], audience="litebase"
    )
    assert set(claims) >= {"sub", "sid", "role", "org", "iat", "exp", "iss", "aud"}
    assert claims["sub"] == body["user"]["id"]
    assert claims["exp"] - claims["iat"] == 900


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "x" * 257}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
    ],
)
async def test_bad_sign_up_names_the_field(client, payload, field):
    response = await client.post("/auth/signup", json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert field in {error["field"] for error in response.json()["errors"]}


async def test_emails_are_unique_whatever_their_case(client, sign_up):
    email = new_email()
    await sign_up(email)
    response = await client.post(
        "/auth/signup", json={"email": email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "email"


async def test_password_sign_in_is_case_insensitive_on_email(client, sign_up):
    email = new_email()
    await sign_up(email)
    response = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["user"]["email"] == email


async def test_unknown_email_and_wrong_password_look_the_same(client, sign_up):
    email = new_email()
    await sign_up(email)
    wrong_password = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": "wrong-password"}
    )
    unknown_email = await client.post(
        "/auth/token",
        json={"grant_type": "password", "email": new_email(), "password": "wrong-password"},
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"grant_type": "password"}, {"email", "password"}),
        ({"grant_type": "password", "email": "a@example.com"}, {"password"}),
        ({"grant_type": "refresh_token"}, {"refresh_token"}),
        ({"grant_type": "client_credentials"}, {"grant_type"}),
    ],
)
async def test_token_requests_missing_fields_are_422(client, payload, fields):
    response = await client.post("/auth/token", json=payload)
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} == fields


async def test_me_needs_a_valid_bearer_token(client, sign_up):
    tokens = await sign_up()
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == tokens["user"]["id"]
    for headers in ({}, bearer("nonsense"), {"Authorization": "Basic abc"}):
        response = await client.get("/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith(PROBLEM)


async def test_a_forged_token_is_refused(client, sign_up):
    tokens = await sign_up()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    for forged in (
        jwt.encode({**claims, "role": "admin"}, None, algorithm="none"),
        jwt.encode({**claims, "role": "admin"}, "another-key-" * 4, algorithm="HS256"),
    ):
        assert (await client.get("/auth/me", headers=bearer(forged))).status_code == 401


async def test_name_can_be_changed(client, sign_up):
    tokens = await sign_up()
    response = await client.patch(
        "/auth/me", json={"name": "Grace"}, headers=bearer(tokens["access_token"])
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Grace"


async def _client_with(settings, clock, **overrides):
    return AsyncTestClient(create_app(msgspec.structs.replace(settings, **overrides), clock=clock))


async def test_failed_sign_ins_per_account_are_limited(settings, clock):
    async with await _client_with(settings, clock, auth_failed_signin_limit=3) as limited:
        email = new_email()
        await limited.post("/auth/signup", json={"email": email, "password": PASSWORD})
        attempt = {"grant_type": "password", "email": email, "password": "wrong-password"}
        for _ in range(3):
            assert (await limited.post("/auth/token", json=attempt)).status_code == 401
        # Now even the right password waits: the account is under attack.
        blocked = await limited.post("/auth/token", json={**attempt, "password": PASSWORD})
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= settings.auth_failed_signin_window_seconds
        # Another account is not affected.
        other = new_email()
        await limited.post("/auth/signup", json={"email": other, "password": PASSWORD})
        fine = await limited.post(
            "/auth/token", json={"grant_type": "password", "email": other, "password": PASSWORD}
        )
        assert fine.status_code == 200


async def test_a_successful_sign_in_clears_the_failure_count(settings, clock):
    async with await _client_with(settings, clock, auth_failed_signin_limit=2) as limited:
        email = new_email()
        await limited.post("/auth/signup", json={"email": email, "password": PASSWORD})
        wrong = {"grant_type": "password", "email": email, "password": "wrong-password"}
        right = {**wrong, "password": PASSWORD}
        for _ in range(3):
            assert (await limited.post("/auth/token", json=wrong)).status_code == 401
            assert (await limited.post("/auth/token", json=right)).status_code == 200


@pytest.mark.parametrize(
    ("setting", "path", "payload"),
    [
        (
            "rate_limit_signup_per_minute",
            "/auth/signup",
            {"email": "x@example.com", "password": "short"},
        ),
        ("rate_limit_token_per_minute", "/auth/token", {"grant_type": "password"}),
        ("rate_limit_password_per_minute", "/auth/password/forgot", {"email": "x@example.com"}),
        (
            "rate_limit_password_per_minute",
            "/auth/password/reset",
            {"token": "t", "new_password": PASSWORD},
        ),
        ("rate_limit_password_per_minute", "/auth/email", {"new_email": "x@example.com"}),
        ("rate_limit_password_per_minute", "/auth/email/confirm", {"token": "t"}),
        ("rate_limit_password_per_minute", "/auth/otp", {"email": "x@example.com"}),
    ],
)
async def test_abuse_prone_routes_are_limited_per_ip(settings, clock, setting, path, payload):
    async with await _client_with(settings, clock, **{setting: 3}) as limited:
        for _ in range(3):
            assert (await limited.post(path, json=payload)).status_code != 429
        response = await limited.post(path, json=payload)
        assert response.status_code == 429
        assert response.headers["content-type"].startswith(PROBLEM)
        assert 0 < int(response.headers["retry-after"]) <= 60
        # Other routes still answer.
        assert (await limited.get("/health")).status_code == 200


async def test_verified_email_can_be_required_to_sign_in(settings, clock, sql):
    async with await _client_with(settings, clock, auth_require_verified_email=True) as strict:
        email = new_email()
        signed_up = await strict.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert signed_up.status_code == 202  # no tokens until the mailbox answers
        assert signed_up.json() == {"status": "check_your_mail"}
        sign_in = {"grant_type": "password", "email": email, "password": PASSWORD}
        refused = await strict.post("/auth/token", json=sign_in)
        assert refused.status_code == 403
        assert refused.json()["code"] == "email_not_verified"
        sql("UPDATE users SET email_verified = true WHERE email = %s", email)
        assert (await strict.post("/auth/token", json=sign_in)).status_code == 200


async def test_passwords_are_stored_as_argon2id(sign_up, sql, settings):
    tokens = await sign_up()
    [(password_hash,)] = sql("SELECT password_hash FROM users WHERE id = %s", tokens["user"]["id"])
    m, t = settings.password_hash_memory_kib, settings.password_hash_time_cost
    assert password_hash.startswith(f"$argon2id$v=19$m={m},t={t},p=1$")


async def test_a_password_hashed_at_other_costs_is_hashed_again_at_sign_in(
    client, sign_up, sql, settings
):
    """An operator who raises (or lowers) PASSWORD_HASH_* gets every account's hash made at the
    new cost as its owner next signs in."""
    tokens = await sign_up()
    user_id, email = tokens["user"]["id"], tokens["user"]["email"]
    made_before = Passwords(19_456, 2).hash(PASSWORD)
    sql("UPDATE users SET password_hash = %s WHERE id = %s", made_before, user_id)
    sign_in = {"grant_type": "password", "email": email, "password": PASSWORD}
    assert (await client.post("/auth/token", json=sign_in)).status_code == 200
    [(password_hash,)] = sql("SELECT password_hash FROM users WHERE id = %s", user_id)
    m, t = settings.password_hash_memory_kib, settings.password_hash_time_cost
    assert password_hash.startswith(f"$argon2id$v=19$m={m},t={t},p=1$")
    assert (await client.post("/auth/token", json=sign_in)).status_code == 200


async def _delete_me(client, tokens, password=PASSWORD):
    return await client.request(
        "DELETE", "/auth/me", json={"password": password}, headers=bearer(tokens["access_token"])
    )


async def test_deleting_my_account_needs_my_password(client, sign_up):
    tokens = await sign_up()
    refused = await _delete_me(client, tokens, password="not my password")
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "password"
    missing = await client.request(
        "DELETE", "/auth/me", json={}, headers=bearer(tokens["access_token"])
    )
    assert missing.status_code in (400, 422) and "password" in missing.text
    assert (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 200


async def test_a_deleted_account_is_gone_at_once_and_its_records_go_or_stay_ownerless(
    client, sign_up, sql
):
    email = new_email()
    tokens = await sign_up(email)
    auth = bearer(tokens["access_token"])
    key = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=auth)).json()["key"]
    note = await client.post("/collections/notes/records", json={"title": "t"}, headers=auth)
    assert note.status_code == 201
    # A project of theirs (projects keep a deleted owner's rows: on_owner_delete="keep").
    sql(
        "INSERT INTO projects (id, name, owner, created_at, updated_at)"
        " VALUES (gen_random_uuid(), 'kept', %s, now(), now())",
        tokens["user"]["id"],
    )

    assert (await _delete_me(client, tokens)).status_code == 204
    assert (await client.get("/auth/me", headers=auth)).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 401
    refreshed = await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refreshed.status_code in (400, 401)
    signed_in = await client.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )
    assert signed_in.status_code in (400, 401)
    # notes go with their owner (their rules read owner); projects stay, with no owner.
    assert sql("SELECT count(*) FROM notes WHERE id = %s", note.json()["id"]) == [(0,)]
    assert sql("SELECT owner FROM projects WHERE name = 'kept'") == [(None,)]
    assert sql("SELECT count(*) FROM users WHERE email = %s", email) == [(0,)]
    # The address is free again.
    assert (await sign_up(email))["user"]["email"] == email


async def test_the_only_owner_of_an_org_hands_it_over_before_leaving(client, sign_up, add_member):
    owner, colleague = await sign_up(), await sign_up()
    org = (
        await client.post("/orgs", json={"name": "Acme"}, headers=bearer(owner["access_token"]))
    ).json()
    refused = await _delete_me(client, owner)
    assert refused.status_code == 409
    assert refused.json()["code"] == "last_owner"
    assert refused.json()["orgs"] == [org["id"]]
    add_member(org["id"], colleague["user"]["id"], "owner")
    assert (await _delete_me(client, owner)).status_code == 204
    members = await client.get(
        f"/orgs/{org['id']}/members", headers=bearer(colleague["access_token"])
    )
    assert [m["user_id"] for m in members.json()["items"]] == [colleague["user"]["id"]]


async def _ask_email_change(client, tokens, new_email, password=PASSWORD):
    return await client.post(
        "/auth/email",
        json={"new_email": new_email, "password": password},
        headers=bearer(tokens["access_token"]),
    )


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"new_email": "not an email", "password": PASSWORD}, "new_email", 422),
        ({"new_email": "x@example.com", "password": "wrong password"}, "password", 422),
        ({"new_email": "x@example.com"}, "password", 422),
        ({"new_email": "x@example.com", "password": PASSWORD, "role": "admin"}, "role", 422),
    ],
)
async def test_a_bad_email_change_names_the_field(client, sign_up, body, field, status):
    tokens = await sign_up()
    response = await client.post("/auth/email", json=body, headers=bearer(tokens["access_token"]))
    assert response.status_code in (400, status), response.text
    assert field in response.text


async def test_an_email_change_to_a_taken_or_the_same_address_is_refused(client, sign_up):
    mine, theirs = new_email("mine"), new_email("theirs")
    tokens = await sign_up(mine)
    await sign_up(theirs)
    taken = await _ask_email_change(client, tokens, theirs.upper())
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "new_email"
    same = await _ask_email_change(client, tokens, mine.upper())
    assert same.status_code == 422
    assert same.json()["errors"][0]["field"] == "new_email"
    assert (await client.post("/auth/email", json={"new_email": theirs})).status_code == 401


async def test_an_address_taken_before_the_confirmation_is_409(client, sign_up, sql):
    wanted = new_email("wanted")
    tokens = await sign_up()
    assert (await _ask_email_change(client, tokens, wanted)).status_code == 202
    token = new_token()
    sql(
        "UPDATE auth_email_tokens SET token_hash = %s WHERE purpose = 'email_change'"
        " AND new_email = %s",
        hash_token(token),
        wanted,
    )
    await sign_up(wanted)  # somebody else got there first
    late = await client.post("/auth/email/confirm", json={"token": token})
    assert late.status_code == 409
    assert late.json()["code"] == "email_taken"
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email"] != wanted


async def test_a_mailed_code_signs_in_once_and_verifies_the_email(client, sign_up, sql, clock):
    email = new_email()
    account = await sign_up(email)
    code = await mailed_sign_in_code(client, sql, email, account["user"]["id"])
    grant = {"grant_type": "otp", "email": email.upper(), "code": code}
    signed_in = await client.post("/auth/token", json=grant)
    assert signed_in.status_code == 200, signed_in.text
    me = await client.get("/auth/me", headers=bearer(signed_in.json()["access_token"]))
    assert me.json()["email_verified"] is True
    assert (await client.post("/auth/token", json=grant)).status_code == 401  # used

    code = await mailed_sign_in_code(client, sql, email, account["user"]["id"])
    clock.advance(seconds=601)  # SIGN_IN_CODE_TTL_SECONDS
    expired = await client.post("/auth/token", json={**grant, "code": code})
    assert expired.status_code == 401
    assert expired.json()["code"] == "invalid_credentials"


async def test_a_new_code_replaces_the_last_and_unknown_emails_look_the_same(client, sign_up, sql):
    email = new_email()
    account = await sign_up(email)
    first = await mailed_sign_in_code(client, sql, email, account["user"]["id"])
    assert (await client.post("/auth/otp", json={"email": email})).status_code == 202
    stale = await client.post(
        "/auth/token", json={"grant_type": "otp", "email": email, "code": first}
    )
    assert stale.status_code == 401
    nobody = await client.post("/auth/otp", json={"email": new_email("nobody")})
    assert (nobody.status_code, nobody.json()) == (202, {"status": "accepted"})
    unknown = await client.post(
        "/auth/token", json={"grant_type": "otp", "email": new_email("nobody"), "code": "123456"}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (401, "invalid_credentials")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"grant_type": "otp", "email": "a@example.com"}, "code"),
        ({"grant_type": "otp", "code": "123456"}, "email"),
        ({"grant_type": "otp", "email": "a@example.com", "code": "12345"}, "code"),
        ({"grant_type": "otp", "email": "a@example.com", "code": "12345a"}, "code"),
    ],
)
async def test_a_bad_code_grant_names_the_field(client, payload, field):
    response = await client.post("/auth/token", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_guessing_codes_is_limited_like_passwords(settings, clock, sql):
    async with await _client_with(settings, clock, auth_failed_signin_limit=3) as client:
        email = new_email()
        signup = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        code = await mailed_sign_in_code(client, sql, email, signup.json()["user"]["id"])
        for guess in sorted({f"{n:06d}" for n in range(4)} - {code})[:3]:
            wrong = {"grant_type": "otp", "email": email, "code": guess}
            assert (await client.post("/auth/token", json=wrong)).status_code == 401
        right = {"grant_type": "otp", "email": email, "code": code}
        refused = await client.post("/auth/token", json=right)
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_attempts"
