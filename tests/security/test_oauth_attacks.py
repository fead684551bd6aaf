"""Attacks on sign-in with a provider (OAuth 2.0 / OpenID Connect), against a real OpenID
provider on loopback: forged and replayed state, replayed and stolen one-time codes, a
tampered nonce, open redirects, merging into a squatter's account, and the limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import msgspec
import pytest
import redis
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from backend.auth.core import AuthCore
from backend.auth.identities import Identities
from backend.auth.models import User
from backend.auth.oauth_flow import CODE_KEY, STATE_KEY
from backend.auth.secrets import hash_token
from backend.config import Settings
from backend.errors import Conflict
from backend.identity import Principal
from backend.lib.urls import async_database_url
from tests.integration.conftest import bearer
from tests.oidc import (
    APP,
    APP_RETURN,
    at_provider,
    exchange,
    oauth_settings,
    oidc_provider,
    path_of,
    person,
    pkce_pair,
    query_of,
    sign_in,
    trip,
)


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider() as url:
        yield url


@pytest.fixture
def settings(database_url, redis_url, issuer) -> Settings:
    return oauth_settings(database_url, redis_url, issuer, oauth_code_ttl_seconds=30)


@pytest.fixture
def store(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


async def leave_for_provider(client, redirect_to: str = APP_RETURN) -> tuple[str, str, str]:
    """(the provider URL, its state, the app's verifier)."""
    verifier, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/mock/authorize",
        params={"redirect_to": redirect_to, "code_challenge": challenge},
        follow_redirects=False,
    )
    assert started.status_code == 302, started.text
    url = started.headers["location"]
    return url, query_of(url)["state"], verifier


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert "location" not in response.headers


async def test_a_forged_state_sends_nobody_anywhere(client, issuer):
    subject, _ = person(issuer)
    url, state, _ = await leave_for_provider(client)
    back = at_provider(url, subject)
    forged = back.replace(f"state={state}", "state=forged-by-attacker")
    assert_problem(await client.get(path_of(forged), follow_redirects=False), 400, "invalid_state")
    no_state = path_of(back).replace(f"state={state}", "")
    assert_problem(await client.get(no_state, follow_redirects=False), 400, "invalid_state")


async def test_a_state_works_once_and_for_its_own_provider(client, issuer):
    subject, _ = person(issuer)
    url, _, _ = await leave_for_provider(client)
    back = path_of(at_provider(url, subject))
    elsewhere = back.replace("/auth/oauth/mock/", "/auth/oauth/github/")
    assert (await client.get(elsewhere, follow_redirects=False)).status_code in (400, 404)
    # Tried on another provider's callback, the state is spent.
    assert_problem(await client.get(back, follow_redirects=False), 400, "invalid_state")
    url, _, _ = await leave_for_provider(client)
    back = path_of(at_provider(url, subject))
    assert (await client.get(back, follow_redirects=False)).status_code == 302
    assert_problem(await client.get(back, follow_redirects=False), 400, "invalid_state")


async def test_a_one_time_code_works_once(client, issuer):
    subject, _ = person(issuer)
    returned, verifier = await trip(client, subject)
    assert (await exchange(client, returned["code"], verifier)).status_code == 200
    replayed = await exchange(client, returned["code"], verifier)
    assert_problem(replayed, 401, "invalid_grant")


async def test_a_stolen_code_is_useless_without_the_apps_verifier(client, issuer, sql):
    subject, address = person(issuer)
    returned, verifier = await trip(client, subject)
    _, attackers_guess = pkce_pair()
    wrong = await exchange(client, returned["code"], attackers_guess + "x" * 10)
    assert_problem(wrong, 401, "invalid_grant")
    # The guess spent the code: not even the app's own verifier works now, and nobody was made.
    assert_problem(await exchange(client, returned["code"], verifier), 401, "invalid_grant")
    assert sql("SELECT count(*) FROM users WHERE lower(email) = lower(%s)", address) == [(0,)]


async def test_a_verifier_that_is_no_verifier_is_422(client):
    refused = await client.post(
        "/auth/token", json={"grant_type": "oauth_code", "code": "lbo_" + "a" * 43}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "code_verifier"
    short = await exchange(client, "lbo_" + "a" * 43, "short")
    assert short.status_code == 422


@pytest.mark.parametrize(
    "redirect_to",
    [
        "https://evil.com/steal",
        "https://app.example.com.evil.com/auth/done",
        "https://app.example.com@evil.com/auth/done",
        "https://app.example.com/auth/done/../../evil",
        "https://app.example.com/auth/done#x",
        "//evil.com/auth/done",
        "http://app.example.com/auth/done",
        f"{APP}/auth/done-not",
    ],
)
async def test_an_unlisted_redirect_is_refused_before_the_provider(client, redirect_to):
    _, challenge = pkce_pair()
    refused = await client.get(
        "/auth/oauth/mock/authorize",
        params={"redirect_to": redirect_to, "code_challenge": challenge},
        follow_redirects=False,
    )
    assert_problem(refused, 400, "redirect_not_allowed")
    assert refused.json()["errors"] == [
        {"field": "redirect_to", "message": "not allowed", "source": "query"}
    ]


async def test_a_tampered_nonce_fails_the_id_token(client, issuer, store):
    """The ID token must carry the nonce this trip sent: here the trip's stored nonce is
    changed, as if the provider's answer belonged to another trip."""
    subject, _ = person(issuer)
    url, state, _ = await leave_for_provider(client)
    key = STATE_KEY.format(hash_token(state))
    flow = msgspec.json.decode(store.get(key))
    store.set(key, msgspec.json.encode({**flow, "nonce": "another-trips-nonce"}), ex=60)
    back = await client.get(path_of(at_provider(url, subject)), follow_redirects=False)
    assert back.status_code == 302
    told = query_of(back.headers["location"])
    assert told["error"] == "invalid_id_token"
    assert "code" not in told


async def test_an_unverified_squatter_never_gets_the_owners_provider_account(
    client, issuer, sign_up, sql
):
    """Someone signs up with the victim's address (never verified); when the victim signs in
    with a provider that vouches for it, nothing is merged into the squatter's account."""
    squatter = await sign_up()
    address = squatter["user"]["email"]
    subject, _ = person(issuer, email=address)
    returned, verifier = await trip(client, subject)
    refused = await exchange(client, returned["code"], verifier)
    assert_problem(refused, 409, "account_not_verified")
    assert sql("SELECT count(*) FROM auth_identities") == [(0,)]
    # The squatter's own session shows no linked provider.
    mine = await client.get("/auth/identities", headers=bearer(squatter["access_token"]))
    assert mine.json()["items"] == []


async def test_an_unverified_provider_email_joins_no_account(client, issuer, sign_up, sql):
    owner = await sign_up()
    sql("UPDATE users SET email_verified = true WHERE id = %s", owner["user"]["id"])
    subject, _ = person(issuer, email=owner["user"]["email"], verified=False)
    returned, verifier = await trip(client, subject)
    refused = await exchange(client, returned["code"], verifier)
    assert_problem(refused, 403, "provider_email_unverified")
    assert sql("SELECT count(*) FROM auth_identities") == [(0,)]
    assert sql("SELECT count(*) FROM users") == [(1,)]


async def test_codes_and_states_are_kept_hashed_and_short_lived(client, issuer, store, settings):
    subject, _ = person(issuer)
    url, state, _ = await leave_for_provider(client)
    state_key = STATE_KEY.format(hash_token(state))
    assert 0 < store.ttl(state_key) <= settings.oauth_state_ttl_seconds
    back = await client.get(path_of(at_provider(url, subject)), follow_redirects=False)
    code = query_of(back.headers["location"])["code"]
    code_key = CODE_KEY.format(hash_token(code))
    assert 0 < store.ttl(code_key) <= settings.oauth_code_ttl_seconds == 30
    for key in store.keys("litebase:oauth:*"):
        assert code.encode() not in key + (store.get(key) or b"")
        assert state.encode() not in key + (store.get(key) or b"")


async def test_a_link_code_needs_the_session_that_asked_to_still_be_signed_in(
    client, issuer, sign_up
):
    account = await sign_up()
    headers = bearer(account["access_token"])
    subject, _ = person(issuer)
    verifier, challenge = pkce_pair()
    started = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=headers,
    )
    back = await client.get(
        path_of(at_provider(started.json()["url"], subject)), follow_redirects=False
    )
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    refused = await exchange(client, query_of(back.headers["location"])["code"], verifier)
    assert_problem(refused, 401, "invalid_grant")


@pytest.fixture
def limited(settings) -> Settings:
    return msgspec.structs.replace(settings, rate_limit_oauth_per_minute=2)


async def test_trips_to_providers_are_rate_limited_per_address(limited, clock):
    from litestar.testing import AsyncTestClient

    from backend.app import create_app

    _, challenge = pkce_pair()
    params = {"redirect_to": APP_RETURN, "code_challenge": challenge}
    async with AsyncTestClient(create_app(limited, clock=clock)) as client:
        answers = [
            (await client.get("/auth/oauth/mock/authorize", params=params, follow_redirects=False))
            for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [302, 302, 429]
    assert "Retry-After" in answers[-1].headers


async def test_a_disabled_account_cannot_sign_in_with_its_provider(client, issuer, sql):
    subject, _ = person(issuer)
    tokens = await sign_in(client, subject)
    sql("UPDATE users SET disabled = true WHERE id = %s", tokens["user"]["id"])
    returned, verifier = await trip(client, subject)
    assert_problem(await exchange(client, returned["code"], verifier), 403, "account_disabled")


async def test_two_unlinks_at_once_never_leave_an_account_without_a_way_in(
    client, issuer, database_url, redis_url, settings, clock
):
    """Two unlinks of an account's last two identities, at the same moment: the account's row
    lock makes them count one after the other, so one is refused. The test holds that row
    until both wait for it (without the lock neither waits, and the test says so)."""
    subject, _ = person(issuer)
    tokens = await sign_in(client, subject)
    headers = bearer(tokens["access_token"])
    other, _ = person(issuer)
    verifier, challenge = pkce_pair()
    started = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=headers,
    )
    back = await client.get(
        path_of(at_provider(started.json()["url"], other)), follow_redirects=False
    )
    assert (await exchange(client, query_of(back.headers["location"])["code"], verifier)).is_success
    ids = [i["id"] for i in (await client.get("/auth/identities", headers=headers)).json()["items"]]
    user_id = uuid.UUID(tokens["user"]["id"])
    me = Principal(user_id=user_id, role="user", org_id=None, session_id=uuid.uuid4())

    engine = create_async_engine(async_database_url(database_url))
    store = Redis.from_url(redis_url)
    sessions = [AsyncSession(engine, expire_on_commit=False) for _ in range(3)]
    holder, *both = sessions
    try:
        await holder.execute(select(User.id).where(User.id == user_id).with_for_update())
        unlinks = {
            asyncio.create_task(
                Identities.over(AuthCore(db, store, settings, clock, None, None)).unlink_identity(
                    me, uuid.UUID(identity)
                )
            ): db
            for db, identity in zip(both, ids, strict=True)
        }
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        deadline = time.monotonic() + 15
        while True:
            # pg_stat_activity is a snapshot per transaction: cleared before each look.
            await holder.execute(text("SELECT pg_stat_clear_snapshot()"))
            if await holder.scalar(waiting) == 2:
                break
            assert time.monotonic() < deadline, (
                "the unlinks did not wait for the account's row",
                [t.exception() if t.done() else "pending" for t in unlinks],
            )
            await asyncio.sleep(0.05)
        await holder.rollback()
        done, pending = await asyncio.wait(unlinks, return_when=asyncio.FIRST_COMPLETED)
        [first] = done
        assert first.exception() is None  # the first to get the row unlinks...
        await unlinks[first].commit()
        [second] = pending
        with pytest.raises(Conflict):  # ...and the second then finds the last way in
            await second
    finally:
        for db in sessions:
            await db.close()
        await engine.dispose()
        await store.aclose()
    assert len((await client.get("/auth/identities", headers=headers)).json()["items"]) == 1
