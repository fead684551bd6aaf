"""Anonymous users: signed in with nothing, told apart by rules (@auth.anonymous), kept with
their records once they confirm an email and a password, deleted by beat once idle."""

from __future__ import annotations

import asyncio

import jwt
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.app_collections.notes import Note
from backend.collections.spec import Collection, CollectionRegistry, Rules
from backend.mail.compose import MailKind
from tests.integration.conftest import (
    PASSWORD,
    bearer,
    known_mailed_token,
    new_email,
    registered_passkey,
)
from tests.soft_authenticator import SoftAuthenticator
from tests.waiting import eventually
from workers.celery_app import create_celery_app

NOTES = "/collections/notes/records"
ANONYMOUS = {"grant_type": "anonymous"}


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, auth_anonymous_enabled=True)


async def _anonymous(client) -> dict:
    response = await client.post("/auth/token", json=ANONYMOUS)
    assert response.status_code == 200, response.text
    tokens: dict = response.json()
    return tokens


def _claims(tokens: dict) -> dict:
    claims: dict = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return claims


async def _refresh(client, tokens: dict) -> dict:
    response = await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert response.status_code == 200, response.text
    refreshed: dict = response.json()
    return refreshed


async def _convert(client, tokens: dict, email: str, **extra):
    return await client.post(
        "/auth/convert",
        json={"email": email, "password": PASSWORD, **extra},
        headers=bearer(tokens["access_token"]),
    )


async def test_an_anonymous_sign_in_is_a_user_without_an_email(client):
    tokens = await _anonymous(client)
    user = tokens["user"]
    assert user["email"] is None and user["is_anonymous"] is True
    assert user["email_verified"] is False
    assert _claims(tokens)["is_anonymous"] is True
    me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["is_anonymous"] is True
    refreshed = await _refresh(client, tokens)
    assert _claims(refreshed)["is_anonymous"] is True
    # Each is a user of its own.
    assert (await _anonymous(client))["user"]["id"] != user["id"]


async def test_a_user_who_signed_up_is_not_anonymous(client, sign_up):
    tokens = await sign_up()
    assert tokens["user"]["is_anonymous"] is False
    assert _claims(tokens)["is_anonymous"] is False


async def test_anonymous_sign_in_is_off_unless_enabled(settings, clock):
    off = msgspec.structs.replace(settings, auth_anonymous_enabled=False)
    async with AsyncTestClient(create_app(off, clock=clock)) as client:
        refused = await client.post("/auth/token", json=ANONYMOUS)
    assert refused.status_code == 403
    assert refused.json()["code"] == "anonymous_disabled"


async def test_anonymous_users_per_address_are_limited_per_hour(settings, clock):
    limited = msgspec.structs.replace(settings, auth_anonymous_per_hour=2)
    async with AsyncTestClient(create_app(limited, clock=clock)) as client:
        for _ in range(2):
            assert (await client.post("/auth/token", json=ANONYMOUS)).status_code == 200
        refused = await client.post("/auth/token", json=ANONYMOUS)
        assert refused.status_code == 429
        assert refused.json()["code"] == "too_many_anonymous_users"
        assert 3000 < int(refused.headers["retry-after"]) <= 3600
        # Other grants from the address are not held up.
        signed_up = await client.post(
            "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        assert signed_up.status_code == 201


async def test_converting_keeps_the_account_and_its_records(client, sql, queued_mail):
    tokens = await _anonymous(client)
    user_id = tokens["user"]["id"]
    note = await client.post(NOTES, json={"title": "mine"}, headers=bearer(tokens["access_token"]))
    assert note.status_code == 201, note.text
    email = new_email("kept")
    asked = await _convert(client, tokens, email, name="Ada")
    assert (asked.status_code, asked.json()) == (202, {"status": "check_your_mail"})
    mail = [m for m in queued_mail() if m.to == email]
    assert [m.kind for m in mail] == [MailKind.EMAIL_CHANGE]
    # Not yet: the address has to answer first.
    me = (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).json()
    assert (me["email"], me["is_anonymous"]) == (None, True)
    sign_in = {"grant_type": "password", "email": email, "password": PASSWORD}
    assert (await client.post("/auth/token", json=sign_in)).status_code == 401

    token = known_mailed_token(sql, user_id, "email_change")
    confirmed = await client.post("/auth/email/confirm", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    user = confirmed.json()
    assert (user["id"], user["email"], user["name"]) == (user_id, email, "Ada")
    assert user["email_verified"] is True and user["is_anonymous"] is False
    # The same session goes on; its next token says so. The note is still its own.
    refreshed = await _refresh(client, tokens)
    assert _claims(refreshed)["is_anonymous"] is False
    listed = await client.get(NOTES, headers=bearer(refreshed["access_token"]))
    assert [n["id"] for n in listed.json()["items"]] == [note.json()["id"]]
    signed_in = await client.post("/auth/token", json=sign_in)
    assert signed_in.status_code == 200 and signed_in.json()["user"]["id"] == user_id


async def test_a_new_conversion_request_replaces_the_one_before(client, sql):
    tokens = await _anonymous(client)
    assert (await _convert(client, tokens, new_email("typo"))).status_code == 202
    first = known_mailed_token(sql, tokens["user"]["id"], "email_change")
    email = new_email("right")
    assert (await _convert(client, tokens, email)).status_code == 202
    assert (await client.post("/auth/email/confirm", json={"token": first})).status_code == 400
    second = known_mailed_token(sql, tokens["user"]["id"], "email_change")
    confirmed = await client.post("/auth/email/confirm", json={"token": second})
    assert confirmed.json()["email"] == email


async def test_a_permanent_account_has_nothing_to_convert(client, sign_up):
    tokens = await sign_up()
    refused = await _convert(client, tokens, new_email())
    assert refused.status_code == 409 and refused.json()["code"] == "not_anonymous"


async def test_an_anonymous_account_deletes_itself_without_a_password(client):
    tokens = await _anonymous(client)
    gone = await client.request(
        "DELETE", "/auth/me", json={}, headers=bearer(tokens["access_token"])
    )
    assert gone.status_code == 204, gone.text
    assert (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401


MEMBERS_ONLY = Collection(
    model=Note,
    name="notes",
    rules=Rules(
        list="owner = @auth.id",
        view="owner = @auth.id",
        create="@auth.id != null && @auth.anonymous = false",
        update="owner = @auth.id",
        delete="owner = @auth.id",
    ),
)


async def test_a_rule_tells_anonymous_users_apart(settings, clock, sign_up, sql):
    """notes whose create rule reads ``@auth.anonymous = false``: a guest may not write, the
    same account may once it is permanent (from its next token), a signed-up user may."""
    app = create_app(settings, clock=clock, collections=CollectionRegistry([MEMBERS_ONLY]))
    async with AsyncTestClient(app) as client:
        guest = await _anonymous(client)
        refused = await client.post(
            NOTES, json={"title": "guest"}, headers=bearer(guest["access_token"])
        )
        assert refused.status_code in (403, 404), refused.text
        member = await client.post(
            "/auth/signup", json={"email": new_email(), "password": PASSWORD}
        )
        made = await client.post(
            NOTES, json={"title": "member"}, headers=bearer(member.json()["access_token"])
        )
        assert made.status_code == 201, made.text
        assert (await _convert(client, guest, new_email("guest"))).status_code == 202
        token = known_mailed_token(sql, guest["user"]["id"], "email_change")
        assert (await client.post("/auth/email/confirm", json={"token": token})).status_code == 200
        permanent = await _refresh(client, guest)
        made = await client.post(
            NOTES, json={"title": "now a member"}, headers=bearer(permanent["access_token"])
        )
        assert made.status_code == 201, made.text
    assert sql("SELECT count(*) FROM notes WHERE title = 'guest'") == [(0,)]


async def _sweep(settings) -> int:
    """Run beat's task here, as a worker would (its own event loop, in a thread)."""
    app = create_celery_app(settings)
    app.loader.import_default_modules()  # as a worker does: the task modules register
    task = app.tasks["auth.delete_idle_anonymous"]
    deleted: int = await asyncio.to_thread(lambda: task.apply().get())
    return deleted


async def _until_refused(client, tokens: dict) -> int:
    async def refused() -> int | None:
        status = (await client.get("/auth/me", headers=bearer(tokens["access_token"]))).status_code
        return status if status == 401 else None

    return await eventually(refused, within=10, every=0.05, what="the token refused")


async def test_beat_deletes_idle_anonymous_users_with_their_records(client, sign_up, settings, sql):
    idle, active = await _anonymous(client), await _anonymous(client)
    old_member = await sign_up()
    for tokens in (idle, active, old_member):
        made = await client.post(
            NOTES, json={"title": "left behind"}, headers=bearer(tokens["access_token"])
        )
        assert made.status_code == 201, made.text
    everyone = [t["user"]["id"] for t in (idle, active, old_member)]
    sql("UPDATE users SET created_at = now() - interval '40 days' WHERE id = ANY(%s)", everyone)
    # The idle one and the member last used a session 40 days ago; the active one today.
    sql(
        "UPDATE auth_sessions SET last_used_at = now() - interval '40 days'"
        " WHERE user_id = ANY(%s)",
        [idle["user"]["id"], old_member["user"]["id"]],
    )
    assert await _sweep(settings) == 1
    left = {str(u) for (u,) in sql("SELECT id FROM users WHERE id = ANY(%s)", everyone)}
    assert left == {active["user"]["id"], old_member["user"]["id"]}
    # As an account deletion: its notes went (on_owner_delete="delete"), its session ends at
    # once on the API processes.
    owners = {str(o) for (o,) in sql("SELECT owner FROM notes WHERE title = 'left behind'")}
    assert owners == left
    assert await _until_refused(client, idle) == 401
    assert (await client.get("/auth/me", headers=bearer(active["access_token"]))).status_code == 200
    # A second run finds no one.
    assert await _sweep(settings) == 0


async def test_a_recently_made_anonymous_user_is_not_idle(client, settings, sql):
    fresh = await _anonymous(client)
    sql(
        "UPDATE auth_sessions SET last_used_at = now() - interval '40 days' WHERE user_id = %s",
        fresh["user"]["id"],
    )
    assert await _sweep(settings) == 0
    assert sql("SELECT count(*) FROM users WHERE id = %s", fresh["user"]["id"]) == [(1,)]


async def test_the_idle_days_are_a_setting(client, settings, sql):
    idle = await _anonymous(client)
    user_id = idle["user"]["id"]
    sql("UPDATE users SET created_at = now() - interval '3 days' WHERE id = %s", user_id)
    sql(
        "UPDATE auth_sessions SET last_used_at = now() - interval '3 days' WHERE user_id = %s",
        user_id,
    )
    for days, deleted in ((4, 0), (2, 1)):
        tuned = msgspec.structs.replace(settings, auth_anonymous_idle_days=days)
        assert await _sweep(tuned) == deleted, days


async def test_a_guest_with_a_passkey_is_a_guest_no_more(client, sql):
    tokens = await _anonymous(client)
    headers = bearer(tokens["access_token"])
    note = await client.post(NOTES, json={"title": "mine"}, headers=headers)
    assert note.status_code == 201, note.text
    await registered_passkey(client, headers, SoftAuthenticator())
    me = (await client.get("/auth/me", headers=headers)).json()
    assert (me["email"], me["is_anonymous"]) == (None, False)
    # The idle sweep passes it by: it has a way back in of its own.
    assert sql("SELECT is_anonymous FROM users WHERE id = %s", tokens["user"]["id"]) == [(False,)]
