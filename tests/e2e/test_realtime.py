"""GET /realtime over a real socket: auth, rule-filtered changes, resume, limits, logout."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

PASSWORD = "correct horse battery staple"


def _ws_url(stack) -> str:
    return stack.base_url.replace("http://", "ws://") + "/realtime"


async def _user(api: httpx.AsyncClient) -> dict:
    email = f"rt-{uuid.uuid4().hex[:10]}@example.com"
    response = await api.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    return response.json()


def _bearer(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _frame(socket, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def _connect(stack, tokens, **kwargs):
    socket = await websockets.connect(_ws_url(stack), **kwargs)
    await socket.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
    ready = await _frame(socket)
    assert ready["type"] == "ready", ready
    return socket


async def _subscribe(socket, sub_id: str, channel: str = "collection:notes", **extra) -> None:
    await socket.send(json.dumps({"type": "subscribe", "id": sub_id, "channel": channel, **extra}))
    assert await _frame(socket) == {"type": "subscribed", "id": sub_id}


async def _events(socket, count: int, timeout: float = 10) -> list[dict]:
    got = []
    while len(got) < count:
        frame = await _frame(socket, timeout)
        if frame["type"] == "event":
            got.append(frame)
    return got


async def _nothing_more(socket, seconds: float = 1.0) -> None:
    with pytest.raises(TimeoutError):
        await _frame(socket, seconds)


@pytest.fixture
async def api(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        yield client


async def test_the_first_frame_must_be_auth_in_time(stack):
    async with websockets.connect(_ws_url(stack)) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await _frame(socket, 5)
    assert closed.value.rcvd.code == 4401


async def test_a_bad_token_is_closed_with_4401(stack):
    async with websockets.connect(_ws_url(stack)) as socket:
        await socket.send(json.dumps({"type": "auth", "token": "nonsense"}))
        with pytest.raises(ConnectionClosed) as closed:
            await _frame(socket)
    assert closed.value.rcvd.code == 4401


async def test_a_foreign_origin_is_refused_at_the_handshake(stack):
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(_ws_url(stack), origin="https://evil.example.com")
    assert refused.value.response.status_code == 403
    allowed = await websockets.connect(_ws_url(stack), origin="https://app.example.com")
    await allowed.close()


async def test_changes_arrive_filtered_by_the_view_rule(stack, api):
    alice, bob = await _user(api), await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "s1")
    mine = (
        await api.post("/collections/notes/records", json={"title": "mine"}, headers=_bearer(alice))
    ).json()
    await api.post(
        "/collections/notes/records", json={"title": "bob private"}, headers=_bearer(bob)
    )
    shared = (
        await api.post(
            "/collections/notes/records",
            json={"title": "bob public", "public": True},
            headers=_bearer(bob),
        )
    ).json()
    events = await _events(socket, 2)
    assert [(e["op"], e["record"]["id"]) for e in events] == [
        ("insert", mine["id"]),
        ("insert", shared["id"]),
    ]
    assert all(e["sub"] == "s1" and e["channel"] == "collection:notes" for e in events)
    assert events[0]["event_id"] < events[1]["event_id"]
    await _nothing_more(socket)  # bob's private note never arrives

    await api.patch(
        f"/collections/notes/records/{mine['id']}", json={"title": "edited"}, headers=_bearer(alice)
    )
    await api.delete(f"/collections/notes/records/{mine['id']}", headers=_bearer(alice))
    update, delete = await _events(socket, 2)
    assert (update["op"], update["record"]["title"]) == ("update", "edited")
    assert (delete["op"], delete["record"]["id"]) == ("delete", mine["id"])
    await socket.close()


async def test_a_client_filter_narrows_a_subscription(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "tagged", filter="tags ?= 'urgent'")
    await api.post("/collections/notes/records", json={"title": "plain"}, headers=_bearer(alice))
    urgent = (
        await api.post(
            "/collections/notes/records",
            json={"title": "now", "tags": ["urgent"]},
            headers=_bearer(alice),
        )
    ).json()
    [event] = await _events(socket, 1)
    assert event["record"]["id"] == urgent["id"]
    await socket.send(
        json.dumps(
            {"type": "subscribe", "id": "bad", "channel": "collection:notes", "filter": "nope = 1"}
        )
    )
    error = await _frame(socket)
    assert (error["type"], error["code"], error["ref"]) == ("error", "bad_filter", "bad")
    await socket.close()


async def test_a_client_that_comes_back_with_since_misses_nothing(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "s")
    await api.post("/collections/notes/records", json={"title": "seen"}, headers=_bearer(alice))
    [seen] = await _events(socket, 1)
    await socket.close()

    missed = [
        (
            await api.post(
                "/collections/notes/records", json={"title": f"missed {i}"}, headers=_bearer(alice)
            )
        ).json()["id"]
        for i in range(3)
    ]
    socket = await _connect(stack, alice)
    await _subscribe(socket, "s", since=seen["event_id"])
    live = asyncio.create_task(
        api.post("/collections/notes/records", json={"title": "live"}, headers=_bearer(alice))
    )
    events = await _events(socket, 4)
    await live
    assert [e["record"]["id"] for e in events[:3]] == missed
    assert events[3]["record"]["title"] == "live"
    assert len({e["event_id"] for e in events}) == 4
    await _nothing_more(socket)
    await socket.close()


async def test_unsubscribe_stops_events(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "s")
    await socket.send(json.dumps({"type": "unsubscribe", "id": "s"}))
    assert await _frame(socket) == {"type": "unsubscribed", "id": "s"}
    await api.post("/collections/notes/records", json={"title": "x"}, headers=_bearer(alice))
    await _nothing_more(socket)
    await socket.send(json.dumps({"type": "ping"}))
    assert await _frame(socket) == {"type": "pong"}
    await socket.close()


async def test_logout_closes_that_sessions_sockets(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await api.post("/auth/logout", headers=_bearer(alice))
    with pytest.raises(ConnectionClosed) as closed:
        await _frame(socket, 5)
    assert closed.value.rcvd.code == 4401


async def test_limits_close_or_refuse_with_a_reason(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await socket.send(json.dumps({"type": "subscribe", "id": "x", "channel": "room:lobby"}))
    assert (await _frame(socket))["code"] == "unknown_channel"
    for i in range(5):
        await _subscribe(socket, f"s{i}")
    await socket.send(
        json.dumps({"type": "subscribe", "id": "one-too-many", "channel": "collection:notes"})
    )
    assert (await _frame(socket))["code"] == "too_many_subscriptions"
    await socket.send("not json")
    assert (await _frame(socket))["code"] == "bad_frame"
    await socket.send(json.dumps({"type": "ping", "pad": "x" * 70_000}))
    with pytest.raises(ConnectionClosed) as closed:
        await _frame(socket)
    assert closed.value.rcvd.code == 1009

    flooder = await _connect(stack, alice)
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(200):
            await flooder.send(json.dumps({"type": "ping"}))
        while True:
            await _frame(flooder)
    assert closed.value.rcvd.code == 1008
