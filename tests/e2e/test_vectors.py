"""Vector search through the whole stack: the relay hands changes to a real Celery worker,
which embeds them with the openai provider against a fake upstream on loopback."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import _spawn, _stop, sql
from tests.waiting import eventually

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
    await eventually(all_found)
    took = time.monotonic() - started
    assert took < 30
    # By meaning (here: the fake upstream's lexical vectors) the one note with pebble7 is first.
    items = await _search(alice, query=f"pebble7 {marker}", mode="vector", k=3)
    assert items[0]["record"]["id"] == notes[7]["id"]
    # Bob sees none of alice's private notes, in any mode.
    mine = {note["id"] for note in notes}
    for mode in ("vector", "text", "hybrid"):
        found = await _search(bob, query=f"pebble7 {marker}", mode=mode, k=50)
        assert not mine & {item["record"]["id"] for item in found}, mode

    edited = notes[3]["id"]
    response = await alice.patch(f"{NOTES}/{edited}", json={"body": f"tangerine {marker}"})
    assert response.status_code == 200

    async def reembedded():
        old = await _search(alice, query=f"pebble3 {marker}", mode="text", k=5)
        new = await _search(alice, query="tangerine", mode="text", k=5)
        gone = all(item["record"]["id"] != edited for item in old)
        return gone and [item["record"]["id"] for item in new] == [edited]

    await eventually(reembedded)
    await alice.delete(f"{NOTES}/{notes[5]['id']}")
    # Deleted rows take their chunks with them at once (ON DELETE CASCADE).
    items = await _search(alice, query=f"pebble5 {marker}", mode="hybrid", k=50)
    assert notes[5]["id"] not in {item["record"]["id"] for item in items}


async def test_provider_errors_retry_then_land_in_the_failures_table(stack, alice, upstream):
    flaky = (await alice.post(NOTES, json={"title": "flaky", "body": "[[500-once]] quince"})).json()
    doomed = (await alice.post(NOTES, json={"title": "doomed", "body": "[[429]] medlar"})).json()

    async def flaky_found():
        return await _search(alice, query="quince", mode="text")

    items = await eventually(flaky_found)
    assert items[0]["record"]["id"] == flaky["id"]

    async def recorded():
        return sql(
            stack,
            "SELECT error, attempts FROM embedding_failures WHERE record_id = %s",
            doomed["id"],
        )

    failures = await eventually(recorded)
    # EMBEDDING_MAX_RETRIES=2: the first try and two retries, then recorded once.
    assert failures == [("the provider answered 429", 3)]
    state = sql(stack, "SELECT status FROM embedding_records WHERE record_id = %s", doomed["id"])
    assert state == [("failed",)]
    assert upstream.state.failures >= 4  # 500 once, 429 three times
    # Fixed at the source, the record is embedded like any other.
    await alice.patch(f"{NOTES}/{doomed['id']}", json={"body": "medlar, fixed"})

    async def fixed():
        return await _search(alice, query="medlar", mode="text")

    assert (await eventually(fixed))[0]["record"]["id"] == doomed["id"]


async def test_a_new_model_reembeds_in_place_while_search_keeps_serving(stack, alice):
    """A worker starts with other settings (a different vector size): the new version builds
    beside the active one, search serves the old vectors meanwhile, then the new ones."""
    marker = uuid.uuid4().hex[:8]
    notes = [
        (await alice.post(NOTES, json={"title": f"r{i}", "body": f"kumquat{i} {marker}"})).json()
        for i in range(20)
    ]

    async def all_found():
        return len(await _search(alice, query=marker, mode="text", k=20)) == 20

    await eventually(all_found)
    # Note 7's own words (title and body): the same hashed vector in any size, so it scores
    # 1.0 whatever other notes' words collide with (hashing into 32 or 64 slots, some of the
    # hundreds of notes the e2e stack holds by now share slots with a shorter query).
    exact_text = f"r7 kumquat7 {marker}"
    (before,) = sql(
        stack,
        "SELECT version FROM embedding_versions WHERE collection = 'notes' AND state = 'active'",
    )
    log = stack.log_dir / "worker-resized.log"
    worker = _spawn(
        [sys.executable, "-m", "backend.cli", "worker", "--concurrency", "1",
         "--include", "tests.e2e.worker_tasks"],
        {**stack.env, "EMBEDDING_DIMENSIONS": "32"},
        log,
    )  # fmt: skip
    try:
        served_meanwhile = 0

        async def swapped():
            nonlocal served_meanwhile
            items = await _search(alice, query=exact_text, mode="vector", k=3)
            served_meanwhile += items[0]["record"]["id"] == notes[7]["id"]
            rows = sql(
                stack,
                "SELECT version, dimensions FROM embedding_versions WHERE collection = 'notes'"
                " AND state = 'active'",
            )
            return rows[0][0] != before[0] and rows[0][1] == 32

        await eventually(swapped, within=90, every=0.1)
        assert served_meanwhile >= 1  # every search while building found the right note
        assert sql(stack, "SELECT DISTINCT vector_dims(embedding) FROM notes_chunks") == [(32,)]
        assert sql(stack, "SELECT state FROM embedding_versions WHERE collection = 'notes'") == [
            ("active",)
        ]

        async def found_in_the_new_version():
            items = await _search(alice, query=exact_text, mode="vector", k=3)
            return items and items[0]["record"]["id"] == notes[7]["id"] and items

        items = await eventually(found_in_the_new_version, within=10, every=0.1)
        assert items[0]["score"] == pytest.approx(1.0)
    finally:
        _stop(worker)
