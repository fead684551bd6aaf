"""Vector search through the whole stack: the relay hands changes to a real Celery worker,
which embeds them with the openai provider against a fake upstream on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest

from backend.lib.urls import libpq_database_url

PASSWORD = "correct horse battery staple"
NOTES = "/collections/notes/records"
SEARCH = "/collections/notes/search"


async def _client(stack) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=10)
    tokens = (
        await client.post(
            "/auth/signup",
            json={"email": f"vec-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        )
    ).json()
    client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    return client


@pytest.fixture
async def alice(stack):
    client = await _client(stack)
    yield client
    await client.aclose()


@pytest.fixture
async def bob(stack):
    client = await _client(stack)
    yield client
    await client.aclose()


async def _search(client, **body) -> list[dict]:
    response = await client.post(SEARCH, json=body)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _until(check, within: float = 30.0, every: float = 0.2):
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(every)


def _sql(stack, statement: str, *params) -> list[tuple]:
    with psycopg.connect(libpq_database_url(stack.database_url), autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


async def test_notes_become_searchable_edits_reembed_deletes_vanish(stack, alice, bob):
    marker = uuid.uuid4().hex[:8]
    created = await asyncio.gather(
        *(
            alice.post(NOTES, json={"title": f"note {i} {marker}", "body": f"pebble{i} {marker}"})
            for i in range(50)
        )
    )
    notes = [response.json() for response in created]
    assert all(response.status_code == 201 for response in created)

    async def all_found():
        items = await _search(alice, query=marker, mode="text", k=50)
        return items if len(items) == 50 else None

    started = time.monotonic()
    await _until(all_found)
    took = time.monotonic() - started
    assert took < 30
    # By meaning (here: the fake upstream's lexical vectors) the one note with pebble7 is first.
    items = await _search(alice, query=f"pebble7 {marker}", mode="vector", k=3)
    assert items[0]["record"]["id"] == notes[7]["id"]
    # Bob sees none of alice's private notes, in any mode.
    for mode in ("vector", "text", "hybrid"):
        assert await _search(bob, query=f"pebble7 {marker}", mode=mode) == []

    edited = notes[3]["id"]
    response = await alice.patch(f"{NOTES}/{edited}", json={"body": f"tangerine {marker}"})
    assert response.status_code == 200

    async def reembedded():
        old = await _search(alice, query=f"pebble3 {marker}", mode="text", k=5)
        new = await _search(alice, query="tangerine", mode="text", k=5)
        gone = all(item["record"]["id"] != edited for item in old)
        return gone and [item["record"]["id"] for item in new] == [edited]

    await _until(reembedded)
    await alice.delete(f"{NOTES}/{notes[5]['id']}")
    # Deleted rows take their chunks with them at once (ON DELETE CASCADE).
    items = await _search(alice, query=f"pebble5 {marker}", mode="hybrid", k=50)
    assert notes[5]["id"] not in {item["record"]["id"] for item in items}


async def test_provider_errors_retry_then_land_in_the_failures_table(stack, alice, upstream):
    flaky = (await alice.post(NOTES, json={"title": "flaky", "body": "[[500-once]] quince"})).json()
    doomed = (await alice.post(NOTES, json={"title": "doomed", "body": "[[429]] medlar"})).json()

    async def flaky_found():
        return await _search(alice, query="quince", mode="text")

    items = await _until(flaky_found)
    assert items[0]["record"]["id"] == flaky["id"]

    async def recorded():
        return _sql(
            stack,
            "SELECT error, attempts FROM embedding_failures WHERE record_id = %s",
            doomed["id"],
        )

    failures = await _until(recorded)
    # EMBEDDING_MAX_RETRIES=2: the first try and two retries, then recorded once.
    assert failures == [("the provider answered 429", 3)]
    state = _sql(stack, "SELECT status FROM embedding_records WHERE record_id = %s", doomed["id"])
    assert state == [("failed",)]
    assert upstream.state.failures >= 4  # 500 once, 429 three times
    # Fixed at the source, the record is embedded like any other.
    await alice.patch(f"{NOTES}/{doomed['id']}", json={"body": "medlar, fixed"})

    async def fixed():
        return await _search(alice, query="medlar", mode="text")

    assert (await _until(fixed))[0]["record"]["id"] == doomed["id"]
