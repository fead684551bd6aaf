"""Issue 18.6 (data routes): records, search, jobs and the rest had no limit per caller, so one
key or one anonymous script could take the API for itself. Now every route that asks who calls
counts the request against the user, the API key, or (anonymous) the client address."""

from __future__ import annotations

import jwt
import msgspec
import pytest

from tests.integration.conftest import bearer

PER_USER, PER_KEY, PER_ADDRESS = 5, 3, 4
NOTES = "/collections/notes/records"


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(
        settings,
        rate_limit_user_per_minute=PER_USER,
        rate_limit_key_per_minute=PER_KEY,
        rate_limit_anonymous_per_minute=PER_ADDRESS,
    )


def _refused(response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_a_user_a_key_and_an_address_each_have_their_own_allowance(client, sign_up):
    alice = await sign_up()
    headers = bearer(alice["access_token"])
    # Minting the key is one of Alice's requests.
    key = (await client.post("/auth/api-keys", json={"name": "k"}, headers=headers)).json()["key"]
    for _ in range(PER_USER - 1):
        assert (await client.get(NOTES, headers=headers)).status_code == 200
    _refused(await client.get(NOTES, headers=headers))
    # A search asks who calls twice (the route and its reader): still one request.
    _refused(await client.post("/collections/notes/search", json={"query": "x"}, headers=headers))

    for _ in range(PER_KEY):  # the key is counted on its own
        assert (await client.get(NOTES, headers=bearer(key))).status_code == 200
    _refused(await client.get(NOTES, headers=bearer(key)))

    bob = await sign_up()  # someone else is not held up
    assert (await client.get(NOTES, headers=bearer(bob["access_token"]))).status_code == 200

    for _ in range(PER_ADDRESS):
        assert (await client.get(NOTES)).status_code == 200
    _refused(await client.get(NOTES))
    _refused(await client.post("/collections/notes/search", json={"query": "x"}))


async def test_a_forged_token_cannot_spend_someone_elses_allowance(client, sign_up):
    victim = await sign_up()
    claims = jwt.decode(victim["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "not the server's secret " * 2, algorithm="HS256")
    for _ in range(PER_USER * 2):
        assert (await client.get(NOTES, headers=bearer(forged))).status_code == 401
    for _ in range(PER_USER):
        listed = await client.get(NOTES, headers=bearer(victim["access_token"]))
        assert listed.status_code == 200, listed.text
