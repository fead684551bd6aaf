"""Issue 18.10: realtime work a caller could make unbounded: a resume (`since`) replaying the
whole outbox, and frames read whole before their size was checked."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
import websockets

from backend.config import settings_from_env
from backend.realtime.transport import uvicorn_flags, uvicorn_options
from tests.e2e.conftest import litebase_api

pytestmark = pytest.mark.xdist_group("e2e")  # shares the e2e stack's worker

PASSWORD = "correct horse battery staple"
REPLAY_MAX = 5


@pytest.fixture(scope="module")
def bounded_api(stack, tmp_path_factory) -> Iterator[str]:
    env = {**stack.env, "REALTIME_REPLAY_MAX_EVENTS": str(REPLAY_MAX)}
    with litebase_api(env, tmp_path_factory.mktemp("replay") / "api.log", "/ready") as base:
        yield base


async def _frame(socket, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def test_a_resume_longer_than_the_replay_bound_is_refused_not_streamed(bounded_api):
    async with httpx.AsyncClient(base_url=bounded_api, timeout=10) as api:
        email = f"replay-{uuid.uuid4().hex[:10]}@example.com"
        tokens = (
            await api.post("/auth/signup", json={"email": email, "password": PASSWORD})
        ).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        socket = await websockets.connect(bounded_api.replace("http://", "ws://") + "/realtime")
        await socket.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
        assert (await _frame(socket))["type"] == "ready"
        await socket.send(
            json.dumps({"type": "subscribe", "id": "live", "channel": "collection:notes"})
        )
        assert await _frame(socket) == {"type": "subscribed", "id": "live"}
        for n in range(REPLAY_MAX + 1):
            created = await api.post(
                "/collections/notes/records", json={"title": f"n{n}"}, headers=headers
            )
            assert created.status_code == 201
        events = [await _frame(socket) for _ in range(REPLAY_MAX + 1)]
        first = min(event["event_id"] for event in events)
        # Resuming from just before the first: REPLAY_MAX + 1 events (at least) to replay.
        await socket.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "resume",
                    "channel": "collection:notes",
                    "since": first - 1,
                }
            )
        )
        assert await _frame(socket) == {"type": "subscribed", "id": "resume"}
        refused = await _frame(socket)
        assert (refused["type"], refused["code"], refused["ref"]) == (
            "error",
            "replay_too_long",
            "resume",
        )
        # Within the bound, a resume replays as before.
        await socket.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "short",
                    "channel": "collection:notes",
                    "since": events[-2]["event_id"],
                }
            )
        )
        assert await _frame(socket) == {"type": "subscribed", "id": "short"}
        replayed = await _frame(socket)
        assert (replayed["sub"], replayed["event_id"]) == ("short", events[-1]["event_id"])
        await socket.close()


def test_the_server_refuses_an_oversized_frame_before_reading_it_whole():
    """uvicorn's own WebSocket limit is the realtime frame limit, so a huge first frame is cut
    off by the protocol (1009) instead of being buffered whole for the app to measure."""
    settings = settings_from_env({"REALTIME_MAX_FRAME_BYTES": "1234"})
    assert uvicorn_options(settings)["ws_max_size"] == 1234
    flags = uvicorn_flags(settings)
    assert flags[flags.index("--ws-max-size") + 1] == "1234"
