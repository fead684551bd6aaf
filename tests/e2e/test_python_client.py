"""The Python client against the real server: auth, collections, and realtime that comes back."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from litebase_client import ApiError, Litebase, RealtimeError

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def lb(stack):
    async with Litebase(stack.base_url) as client:
        await client.sign_up(f"client-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
        yield client


async def test_collections_round_trip(lb):
    notes = lb.collection("notes")
    created = await notes.create({"title": "from the client", "tags": ["py"]})
    assert (await notes.get(created["id"]))["title"] == "from the client"
    await notes.update(created["id"], {"public": True})
    for i in range(3):
        await notes.create({"title": f"more {i}"})
    everything = await notes.all(limit=2, sort="-created_at", filter="owner = @auth.id")
    assert len(everything) == 4
    with pytest.raises(ApiError) as refused:
        await notes.create({"title": 5})
    assert refused.value.status == 422
    assert refused.value.problem["errors"][0]["field"] == "title"
    await notes.delete(created["id"])


async def test_search_finds_records_once_embedded(lb):
    notes = lb.collection("notes")
    marker = uuid.uuid4().hex[:8]
    created = await notes.create({"title": "client search", "body": f"persimmon {marker}"})
    for _ in range(150):
        items = await notes.search(marker, mode="text", k=3)
        if items:
            break
        await asyncio.sleep(0.2)
    assert [item["record"]["id"] for item in items] == [created["id"]]
    assert marker in items[0]["chunk"]["content"]
    with pytest.raises(ApiError) as refused:
        await notes.search(marker, k=0)
    assert refused.value.problem["errors"][0]["field"] == "k"


async def test_tokens_refresh_themselves(lb):
    old = lb.refresh_token
    await lb.refresh()
    assert lb.refresh_token != old  # rotated
    assert (await lb.collection("notes").list(filter="owner = @auth.id"))["items"] == []


async def test_realtime_reconnects_and_misses_nothing(lb):
    notes = lb.collection("notes")
    states: list[str] = []
    async with lb.realtime(on_state=states.append, max_backoff=0.5) as live:
        await live.wait_open()
        subscription = await live.subscribe("collection:notes")
        await asyncio.sleep(0.3)
        first = await notes.create({"title": "before the drop"})
        assert (await subscription.next(10))["record"]["id"] == first["id"]

        live._ws.transport.abort()  # the network goes away
        written = [(await notes.create({"title": f"while away {i}"}))["id"] for i in range(5)]
        received = [(await subscription.next(20))["record"]["id"] for _ in range(5)]
        assert received == written
        with pytest.raises(TimeoutError):
            await subscription.next(1.0)  # and nothing twice
    assert states[:2] == ["connecting", "open"]
    assert "reconnecting" in states and states.count("open") >= 2


async def test_realtime_errors_reach_the_subscription(lb):
    async with lb.realtime() as live:
        await live.wait_open()
        subscription = await live.subscribe("collection:notes", filter="nope = 1")
        with pytest.raises(RealtimeError) as error:
            await subscription.next(10)
        assert error.value.code == "bad_filter"
