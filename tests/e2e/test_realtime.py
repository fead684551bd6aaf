"""GET /realtime over a real socket: auth, rule-filtered changes, resume, limits, logout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket as net
import time
import uuid

import httpx
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.e2e.conftest import Stack, api_beside, sql
from tests.integration.conftest import in_org
from tests.support import with_redis_db
from tests.waiting import eventually

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


async def _frames_until(socket, last, timeout: float = 10) -> list[dict]:
    """The frames received up to and including the first for which ``last(frame)`` holds: to
    show that something did not arrive, look for it among those before a later signal."""
    frames = [await _frame(socket, timeout)]
    while not last(frames[-1]):
        frames.append(await _frame(socket, timeout))
    return frames


async def _pong(socket) -> None:
    """A round trip: the next frame is the answer to a ping (nothing was queued before it)."""
    await socket.send(json.dumps({"type": "ping"}))
    assert await _frame(socket) == {"type": "pong"}


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
    # Bob's private note, written between those two, was not sent: events come in outbox order.

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
    # Nothing came twice: the next event is of a note written after them all.
    after = (
        await api.post(
            "/collections/notes/records", json={"title": "after"}, headers=_bearer(alice)
        )
    ).json()
    [event] = await _events(socket, 1)
    assert event["record"]["id"] == after["id"]
    await socket.close()


async def test_unsubscribe_stops_events(stack, api):
    alice = await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "s")
    await _subscribe(socket, "witness")
    await socket.send(json.dumps({"type": "unsubscribe", "id": "s"}))
    assert await _frame(socket) == {"type": "unsubscribed", "id": "s"}
    note = (
        await api.post("/collections/notes/records", json={"title": "x"}, headers=_bearer(alice))
    ).json()
    # The subscription still there gets the change; the one that was dropped did not, by then
    # or by the answer to a ping after it.
    frames = await _frames_until(socket, lambda frame: frame.get("sub") == "witness")
    assert [(f["sub"], f["record"]["id"]) for f in frames] == [("witness", note["id"])]
    await _pong(socket)
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
    await socket.send(json.dumps({"type": "subscribe", "id": "x", "channel": "nope:1"}))
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


# --- several API processes -----------------------------------------------------------------


@pytest.fixture
def short_tokens_api(stack, tmp_path):
    """A second API process on the same database and Redis, issuing 3-second access tokens."""
    with api_beside(stack, {"ACCESS_TOKEN_TTL_SECONDS": "3"}, tmp_path / "api.log") as other:
        yield other


async def test_a_change_written_through_one_process_reaches_a_socket_on_another(
    stack, api, short_tokens_api
):
    alice = await _user(api)
    socket = await _connect(short_tokens_api, alice)
    await _subscribe(socket, "s")
    note = (
        await api.post(
            "/collections/notes/records", json={"title": "via A"}, headers=_bearer(alice)
        )
    ).json()
    [event] = await _events(socket, 1)
    assert event["record"]["id"] == note["id"]
    await socket.close()


async def test_an_expired_token_pauses_events_until_a_new_auth_frame(stack, api, short_tokens_api):
    other = short_tokens_api
    async with httpx.AsyncClient(base_url=other.base_url, timeout=10) as short:
        alice = await _user(short)
        socket = await _connect(other, alice)
        await _subscribe(socket, "s")
        expired = await _frame(socket, 8)
        assert (expired["type"], expired["code"]) == ("error", "token_expired")
        await api.post(
            "/collections/notes/records",
            json={"title": "while expired"},
            headers={"Authorization": f"Bearer {(await _user(api))['access_token']}"},
        )  # someone else's, private
        mine = await short.post(
            "/auth/token",
            json={"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]},
        )
        fresh = mine.json()
        # Someone on the same process whose token (from the stack's API) has not expired.
        watcher = await _connect(other, await _user(api))
        await _subscribe(watcher, "w")
        note = (
            await api.post(
                "/collections/notes/records",
                json={"title": "mine", "public": True},
                headers=_bearer(fresh),
            )
        ).json()
        # Held back until the new auth frame: the watcher has the note, and the paused socket
        # still has sent nothing but the answer to a ping.
        [seen] = await _events(watcher, 1)
        assert seen["record"]["id"] == note["id"]
        await _pong(socket)
        await socket.send(json.dumps({"type": "auth", "token": fresh["access_token"]}))
        [event] = await _events(socket, 1)
        assert event["record"]["id"] == note["id"]
        await socket.close()
        await watcher.close()


async def test_killing_the_relay_leader_mid_stream_loses_and_repeats_nothing(
    stack, services, tmp_path
):
    """1,000 changes; the leading API process is killed while they are written; a socket on
    the other process receives every one, in order, exactly once."""
    database_url = services.create_database(f"lbt_failover_{uuid.uuid4().hex[:8]}")
    own = {
        "DATABASE_URL": database_url,
        "REDIS_URL": with_redis_db(services.redis_url, 3),
        "RELAY_STANDBY_SECONDS": "0.3",
        "RELAY_POLL_SECONDS": "0.1",
        "REALTIME_SEND_QUEUE": "5000",
    }
    try:
        with (
            api_beside(stack, own, tmp_path / "first.log") as first,
            api_beside(stack, own, tmp_path / "second.log") as second,
        ):
            leader = await _relay_leader(first, second)
            survivor = second if leader is first else first
            async with httpx.AsyncClient(base_url=survivor.base_url, timeout=10) as api:
                alice = await _user(api)
            socket = await _connect(survivor, alice)
            await _subscribe(socket, "s")
            writer = asyncio.create_task(
                asyncio.to_thread(_write_notes, survivor, alice["user"]["id"], 1000)
            )
            received: list[int] = []
            while len(received) < 150:
                received += [e["event_id"] for e in await _events(socket, 1)]
            os.killpg(leader.process.pid, signal.SIGKILL)
            leader.process.wait(10)
            await writer
            while len(received) < 1000:
                received += [e["event_id"] for e in await _events(socket, 1, timeout=20)]
            assert received == sorted(received) and len(set(received)) == 1000
            # Nothing came twice: the next event is of a note written after them all.
            [(marker,)] = sql(
                survivor,
                "INSERT INTO notes (id, title, owner, created_at, updated_at)"
                " VALUES (gen_random_uuid(), 'after', %s, now(), now()) RETURNING id",
                alice["user"]["id"],
            )
            [after] = await _events(socket, 1, timeout=20)
            assert after["record"]["id"] == str(marker)
            await socket.close()
    finally:
        services.drop_database(database_url.rsplit("/", 1)[1].split("?")[0])


async def _relay_leader(*stacks: Stack) -> Stack:
    """The API process whose relay connection holds the advisory lock (named by its pid)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = sql(
            stacks[0],
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND a.application_name LIKE 'litebase relay pid=%%'",
        )
        if rows:
            pid = int(rows[0][0].rsplit("=", 1)[1])
            for stack in stacks:
                if stack.process is not None and stack.process.pid == pid:
                    return stack
        await asyncio.sleep(0.2)
    seen = sql(
        stacks[0],
        "SELECT a.application_name, l.locktype, l.granted FROM pg_stat_activity a"
        " LEFT JOIN pg_locks l ON a.pid = l.pid AND l.locktype = 'advisory'",
    )
    raise AssertionError(f"no relay leader found among {seen}")


def _write_notes(stack: Stack, owner: str, count: int) -> None:
    for start in range(0, count, 10):
        sql(
            stack,
            "INSERT INTO notes (id, title, owner, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'n' || g, %s, now(), now()"
            " FROM generate_series(%s::int, %s::int) g",
            owner,
            start,
            start + 9,
        )
        time.sleep(0.01)  # pacing, not a wait: the writes go on while the leader is killed


async def test_history_past_retention_is_trimmed_and_said_to_be_gone(stack, api):
    from backend.config import settings_from_env
    from workers.celery_app import create_celery_app

    alice = await _user(api)
    note = (
        await api.post("/collections/notes/records", json={"title": "old"}, headers=_bearer(alice))
    ).json()
    [(event_id,)] = sql(stack, "SELECT id FROM outbox WHERE record_id = %s", note["id"])
    sql(stack, "UPDATE outbox SET created_at = now() - interval '25 hours' WHERE id = %s", event_id)
    await eventually(
        lambda: (
            sql(
                stack,
                "SELECT coalesce(max(last_id), 0) FROM outbox_relay_state WHERE name = 'default'",
            )
            >= [(event_id,)]
        ),
        within=10,
        what="the relay passing the event",
    )
    celery = create_celery_app(
        settings_from_env(
            {}, env="test", database_url=stack.database_url, redis_url=stack.redis_url
        )
    )
    celery.send_task("outbox.trim")  # on the stack's worker; its effect is what counts
    await eventually(
        lambda: sql(stack, "SELECT count(*) FROM outbox WHERE id = %s", event_id) == [(0,)],
        what="the worker trimming the old event",
    )

    socket = await _connect(stack, alice)
    await _subscribe(socket, "old", since=event_id - 1)
    gone = await _frame(socket)
    assert (gone["type"], gone["code"], gone["ref"]) == ("error", "history_gone", "old")
    await socket.close()


# --- rooms --------------------------------------------------------------------------------


async def _member_of(api, stack, org_id: str | None = None) -> tuple[dict, str]:
    """A user acting in ``org_id`` (a new org when None); returns (tokens, org id)."""
    tokens = await _user(api)
    if org_id is None:
        org_id = (
            await api.post("/orgs", json={"name": "Room org"}, headers=_bearer(tokens))
        ).json()["id"]
    else:
        sql(
            stack,
            "INSERT INTO org_members (id, org_id, user_id, role, created_at, updated_at)"
            " VALUES (gen_random_uuid(), %s, %s, 'member', now(), now())",
            org_id,
            tokens["user"]["id"],
        )
    return await in_org(api, tokens, org_id), org_id


async def _join(stack, tokens, sub_id="r", channel="room:lobby", **extra):
    socket = await _connect(stack, tokens)
    await _subscribe(socket, sub_id, channel=channel, **extra)
    state = await _frame(socket)
    assert state["type"] == "presence" and state["leaves"] == {}
    return socket, state["joins"]


async def test_broadcasts_reach_the_org_and_no_one_else(stack, api):
    alice, org = await _member_of(api, stack)
    bob, _ = await _member_of(api, stack, org)
    stranger, _ = await _member_of(api, stack)
    a, _ = await _join(stack, alice, **{"self": True})
    b, _ = await _join(stack, bob)
    c, _ = await _join(stack, stranger, **{"self": True})

    def cursor(x: int) -> str:
        return json.dumps(
            {"type": "broadcast", "channel": "room:lobby", "event": "cursor", "payload": {"x": x}}
        )

    await a.send(cursor(1))
    assert await _frame(b) == {
        "type": "broadcast",
        "channel": "room:lobby",
        "event": "cursor",
        "payload": {"x": 1},
        "from": alice["user"]["id"],
    }
    assert (await _frame(a))["payload"] == {"x": 1}  # "self": true hears itself
    await b.send(cursor(2))
    assert (await _frame(a))["payload"] == {"x": 2}
    await a.send(cursor(3))
    # Without "self", a sender does not hear itself: what bob hears next is alice's cursor.
    assert (await _frame(b))["payload"] == {"x": 3}
    # Another org's room of the same name is another room: the stranger hears only itself.
    await c.send(cursor(4))
    assert await _frame(c) == {
        "type": "broadcast",
        "channel": "room:lobby",
        "event": "cursor",
        "payload": {"x": 4},
        "from": stranger["user"]["id"],
    }
    await b.send(json.dumps({"type": "broadcast", "channel": "room:other", "event": "x"}))
    assert (await _frame(b))["code"] == "not_subscribed"
    for socket in (a, b, c):
        await socket.close()


async def test_presence_gives_the_full_state_then_joins_and_leaves(stack, api):
    alice, org = await _member_of(api, stack)
    bob, _ = await _member_of(api, stack, org)
    a, initial = await _join(stack, alice, channel="room:desk")
    assert initial == {}
    await a.send(
        json.dumps({"type": "presence", "channel": "room:desk", "state": {"status": "typing"}})
    )
    joined = await _frame(a)
    [(key, entry)] = joined["joins"].items()
    assert entry == {"user": alice["user"]["id"], "state": {"status": "typing"}}
    b, state = await _join(stack, bob, channel="room:desk")
    assert state == {key: entry}
    await a.close()  # abruptly or not, the entry goes
    left = await _frame(b)
    assert left == {"type": "presence", "channel": "room:desk", "joins": {}, "leaves": {key: entry}}
    await b.close()


async def test_user_channels_are_for_that_user_only(stack, api):
    alice, bob = await _user(api), await _user(api)
    socket = await _connect(stack, alice)
    await _subscribe(socket, "me", channel=f"user:{alice['user']['id']}")
    await socket.send(
        json.dumps({"type": "subscribe", "id": "them", "channel": f"user:{bob['user']['id']}"})
    )
    refused = await _frame(socket)
    assert (refused["code"], refused["ref"]) == ("forbidden", "them")
    await socket.close()


async def test_presence_of_a_dead_process_expires(stack, api, tmp_path):
    """A socket's API process is SIGKILLed: its presence entry expires and the room hears it."""
    alice, org = await _member_of(api, stack)
    bob, _ = await _member_of(api, stack, org)
    with api_beside(stack, {"REALTIME_PRESENCE_TTL_SECONDS": "2"}, tmp_path / "api.log") as doomed:
        a, _ = await _join(doomed, alice, channel="room:wake")
        b, _ = await _join(stack, bob, channel="room:wake")
        await a.send(
            json.dumps({"type": "presence", "channel": "room:wake", "state": {"here": True}})
        )
        joined = await _frame(b)
        [key] = joined["joins"]
        os.killpg(doomed.process.pid, signal.SIGKILL)
        doomed.process.wait(10)
        left = await _frame(b, 20)  # the survivors' heartbeat notices the stale entry
        assert left["leaves"] == {key: {"user": alice["user"]["id"], "state": {"here": True}}}
        await b.close()


# --- clients that stop reading or stop answering pings ------------------------------------


class RawClient:
    """A WebSocket client on a plain socket that reads only when told to and never answers a
    ping (websockets' own client always does, as it must)."""

    def __init__(self, url: str, receive_buffer: int | None = None) -> None:
        self.uri = parse_uri(url)
        self.sock = net.socket()
        if receive_buffer is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(net.SOL_SOCKET, net.SO_RCVBUF, receive_buffer)
        self.sock.connect((self.uri.host, self.uri.port))
        self.protocol = ClientProtocol(self.uri)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self.frames: list[Frame] = []
        self.ended = False  # the server closed or reset the connection
        while self.protocol.state is not State.OPEN:
            self._read(5)

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def _read(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(262_144)
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.ended = True
            self.protocol.receive_eof()
        self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
        self.protocol.data_to_send()  # dropped: the pongs (and close replies) never go out

    def send_json(self, message: dict) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()

    def next_json(self, timeout: float = 10) -> dict:
        while not any(f.opcode is Opcode.TEXT for f in self.frames):
            self._read(timeout)
        frame = next(f for f in self.frames if f.opcode is Opcode.TEXT)
        self.frames.remove(frame)
        return json.loads(frame.data)

    def read_to_the_end(self, timeout: float) -> tuple[int, Close | None]:
        """Read until the server ends the connection: (event frames read, its close frame)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still open after {timeout} s")
            try:
                self._read(left)
            except TimeoutError:
                continue
        events = sum(1 for f in self.frames if f.opcode is Opcode.TEXT)
        close = next((f for f in self.frames if f.opcode is Opcode.CLOSE), None)
        return events, Close.parse(close.data) if close is not None else None

    def close(self) -> None:
        self.sock.close()


def _raw_connect(url: str, tokens: dict, receive_buffer: int | None = None) -> RawClient:
    client = RawClient(url, receive_buffer)
    client.send_json({"type": "auth", "token": tokens["access_token"]})
    assert client.next_json()["type"] == "ready"
    return client


def _write_messages(stack: Stack, org: str, owner: str, count: int, size: int) -> None:
    sql(
        stack,
        "INSERT INTO messages (id, room, body, owner, org, created_at, updated_at)"
        " SELECT gen_random_uuid(), 'slow', repeat('x', %s), %s, %s, now(), now()"
        " FROM generate_series(1, %s)",
        size,
        owner,
        org,
        count,
    )


SEND_TIMEOUT = 3.0


@pytest.fixture
def strict_api(stack, tmp_path):
    """An API process that gives up on a client taking nothing after SEND_TIMEOUT seconds."""
    overrides = {"REALTIME_SEND_TIMEOUT_SECONDS": str(SEND_TIMEOUT)}
    with api_beside(stack, overrides, tmp_path / "api.log") as strict:
        yield strict


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(
    stack, api, strict_api
):
    """~5 MB of changes while two clients with tiny receive buffers read nothing: the server
    gives up on each after the send timeout (the one that reads again before the connection is
    aborted gets the 4008 close frame; for the other the connection just ends), a healthy
    subscriber on the same process gets every change, and the process stays well."""
    on_strict = strict_api
    alice, org = await _member_of(api, stack)
    url = _ws_url(on_strict)
    soon, never = (_raw_connect(url, alice, receive_buffer=4096) for _ in range(2))
    for client in (soon, never):
        client.send_json({"type": "subscribe", "id": "m", "channel": "collection:messages"})
        assert client.next_json() == {"type": "subscribed", "id": "m"}
    healthy = await _connect(on_strict, alice)
    await _subscribe(healthy, "m", channel="collection:messages")

    count = 300
    writing = asyncio.create_task(
        asyncio.to_thread(_write_messages, stack, org, alice["user"]["id"], count, 16_000)
    )
    await _events(healthy, 1, timeout=20)
    # The stuck clients' sends got stuck within the burst's first ~100 KB, about now: each is
    # closed one send timeout later and aborted one more after that.
    started = time.monotonic()
    assert len(await _events(healthy, count - 1, timeout=20)) == count - 1
    await writing

    # Read again between the close and the abort. A timed wait, not a stand-in for a condition:
    # the send timeout is what is under test, and the server says nothing until the close.
    await asyncio.sleep(started + 1.5 * SEND_TIMEOUT - time.monotonic())
    events, close = await asyncio.to_thread(soon.read_to_the_end, 10)
    assert events < count
    assert close is not None and close.code == 4008 and "too slow" in close.reason
    # The other reads only after that: the server had let it go (no close frame got through).
    # Timed too: reading only once the abort timer (another send timeout) has run out is the
    # point.
    await asyncio.sleep(started + 2 * SEND_TIMEOUT + 2 - time.monotonic())
    events, close = await asyncio.to_thread(never.read_to_the_end, 10)
    assert events < count
    assert close is None or close.code == 4008

    async with httpx.AsyncClient(base_url=on_strict.base_url) as client:
        assert (await client.get("/health")).status_code == 200
    await healthy.send(json.dumps({"type": "ping"}))
    assert await _frame(healthy) == {"type": "pong"}
    await healthy.close()
    for client in (soon, never):
        client.close()
    stopping = time.monotonic()
    os.killpg(on_strict.process.pid, signal.SIGTERM)
    on_strict.process.wait(10)
    assert time.monotonic() - stopping < 10


PING_INTERVAL, PING_TIMEOUT = 1.0, 1.0


@pytest.fixture
def pinging_api(stack, tmp_path):
    """An API process that pings every second and waits a second for the answer."""
    overrides = {
        "REALTIME_PING_INTERVAL_SECONDS": str(PING_INTERVAL),
        "REALTIME_PING_TIMEOUT_SECONDS": str(PING_TIMEOUT),
    }
    with api_beside(stack, overrides, tmp_path / "api.log") as pinging:
        yield pinging


async def test_a_client_that_stops_answering_pings_is_closed(stack, api, pinging_api):
    on_pinging = pinging_api
    alice = await _user(api)
    answering = await _connect(on_pinging, alice)  # websockets answers pings by itself
    started = time.monotonic()
    silent = await asyncio.to_thread(_raw_connect, _ws_url(on_pinging), alice)
    _, close = await asyncio.to_thread(silent.read_to_the_end, PING_INTERVAL + PING_TIMEOUT + 3)
    assert close is not None and close.code == 1011
    assert time.monotonic() - started < PING_INTERVAL + PING_TIMEOUT + 2
    silent.close()

    # The silent one was closed for missing a ping that the answering one (connected first)
    # was sent too and answered: it is still connected.
    await answering.send(json.dumps({"type": "ping"}))
    assert await _frame(answering) == {"type": "pong"}
    await answering.close()
