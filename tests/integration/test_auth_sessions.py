"""Sessions and refresh tokens: rotation, the reuse grace window, revocation, an hour of use."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import PASSWORD, bearer, new_email


async def _refresh(client, refresh_token, **extra):
    return await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
    )


async def _me(client, access_token):
    return await client.get("/auth/me", headers=bearer(access_token))


async def test_refresh_rotates_the_refresh_token(client, sign_up):
    first = await sign_up()
    second = (await _refresh(client, first["refresh_token"])).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"]["id"] == first["user"]["id"]
    assert (await _me(client, second["access_token"])).status_code == 200
    third = await _refresh(client, second["refresh_token"])
    assert third.status_code == 200


async def test_a_replay_within_the_grace_window_gets_the_same_pair(client, sign_up, clock):
    first = await sign_up()
    rotated = (await _refresh(client, first["refresh_token"])).json()
    clock.advance(seconds=9)
    again = await _refresh(client, first["refresh_token"])
    assert again.status_code == 200
    assert again.json() == rotated


async def test_concurrent_refreshes_with_one_token_all_succeed_alike(client, sign_up):
    first = await sign_up()
    answers = await asyncio.gather(*(_refresh(client, first["refresh_token"]) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.json()["refresh_token"] for a in answers}) == 1
    assert len({a.json()["access_token"] for a in answers}) == 1


async def test_a_replay_after_the_grace_window_revokes_the_whole_session(client, sign_up, clock):
    first = await sign_up()
    rotated = (await _refresh(client, first["refresh_token"])).json()
    clock.advance(seconds=11)
    replay = await _refresh(client, first["refresh_token"])
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_grant"
    # The thief's copy and the rightful owner's newest tokens are all dead now.
    assert (await _refresh(client, rotated["refresh_token"])).status_code == 401
    assert (await _me(client, rotated["access_token"])).status_code == 401


async def test_refreshing_for_an_hour_never_logs_out(client, sign_up, clock):
    tokens = await sign_up()
    for _ in range(5):  # 5 times 14 min: 70 minutes of use
        clock.advance(minutes=14)
        assert (await _me(client, tokens["access_token"])).status_code == 200
        answer = await _refresh(client, tokens["refresh_token"])
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
    assert (await _me(client, tokens["access_token"])).status_code == 200


async def test_an_access_token_expires_but_its_session_refreshes(client, sign_up, clock):
    tokens = await sign_up()
    clock.advance(minutes=15, seconds=1)
    expired = await _me(client, tokens["access_token"])
    assert expired.status_code == 401
    assert expired.json()["code"] == "invalid_token"
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 200


async def test_an_idle_session_expires(client, sign_up, clock):
    tokens = await sign_up()
    clock.advance(days=31)
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401


async def test_logout_revokes_the_session_at_once(client, sign_up):
    tokens = await sign_up()
    assert (await _me(client, tokens["access_token"])).status_code == 200
    logout = await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert logout.status_code == 204
    refused = await _me(client, tokens["access_token"])
    assert refused.status_code == 401
    assert refused.json()["code"] == "session_ended"
    assert (await _refresh(client, tokens["refresh_token"])).status_code == 401


async def test_sessions_are_listed_and_revoked_one_by_one(client, sign_up):
    email = new_email()
    laptop = await sign_up(email)
    phone = (
        await client.post(
            "/auth/token",
            json={"grant_type": "password", "email": email, "password": PASSWORD},
            headers={"User-Agent": "phone"},
        )
    ).json()
    sessions = (await client.get("/auth/sessions", headers=bearer(laptop["access_token"]))).json()[
        "items"
    ]
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    phone_session = next(s for s in sessions if s["user_agent"] == "phone")
    revoked = await client.delete(
        f"/auth/sessions/{phone_session['id']}", headers=bearer(laptop["access_token"])
    )
    assert revoked.status_code == 204
    assert (await _me(client, phone["access_token"])).status_code == 401
    assert (await _me(client, laptop["access_token"])).status_code == 200


async def test_someone_elses_session_is_not_found(client, sign_up):
    alice, bob = await sign_up(), await sign_up()
    bobs = (await client.get("/auth/sessions", headers=bearer(bob["access_token"]))).json()["items"]
    response = await client.delete(
        f"/auth/sessions/{bobs[0]['id']}", headers=bearer(alice["access_token"])
    )
    assert response.status_code == 404
    assert (await _me(client, bob["access_token"])).status_code == 200


async def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(client, sign_up):
    email = new_email()
    here = await sign_up(email)
    elsewhere = (
        await client.post(
            "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
        )
    ).json()
    headers = bearer(here["access_token"])
    for current in (None, "wrong-password"):
        refused = await client.patch(
            "/auth/me",
            json={"new_password": "a brand new password", "current_password": current},
            headers=headers,
        )
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "current_password"
    changed = await client.patch(
        "/auth/me",
        json={"new_password": "a brand new password", "current_password": PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 200
    assert (await _me(client, here["access_token"])).status_code == 200
    assert (await _me(client, elsewhere["access_token"])).status_code == 401
    sign_in = {"grant_type": "password", "email": email}
    new = await client.post("/auth/token", json={**sign_in, "password": "a brand new password"})
    assert new.status_code == 200
    old = await client.post("/auth/token", json={**sign_in, "password": PASSWORD})
    assert old.status_code == 401


async def test_refresh_tokens_are_stored_hashed(client, sign_up, sql):
    tokens = await sign_up()
    stored = [row[0] for row in sql("SELECT token_hash FROM auth_refresh_tokens")]
    assert tokens["refresh_token"] not in stored
    assert all(len(h) == 64 for h in stored)


async def test_logout_reaches_every_api_process_at_once(client, sign_up, settings, clock):
    """Each process caches session state; a revocation on one is heard by the others."""
    from litestar.testing import AsyncTestClient
    from redis.asyncio import Redis

    from backend.app import create_app
    from backend.auth.revocations import REVOCATIONS_CHANNEL

    async def listeners() -> int:
        async with Redis.from_url(settings.redis_url) as redis:
            return int(
                dict(await redis.pubsub_numsub(REVOCATIONS_CHANNEL))[REVOCATIONS_CHANNEL.encode()]
            )

    tokens = await sign_up()
    before = await listeners()
    async with AsyncTestClient(create_app(settings, clock=clock)) as other_process:
        assert (await _me(other_process, tokens["access_token"])).status_code == 200  # cached
        async with asyncio.timeout(5):  # its revocation feed is subscribed
            while await listeners() == before:
                await asyncio.sleep(0.02)
        await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
        async with asyncio.timeout(2):
            while (await _me(other_process, tokens["access_token"])).status_code != 401:
                await asyncio.sleep(0.02)
