"""/collections/notes/ask through the whole stack: notes embedded by a real worker, the answer
from rag_answer through the gateway (the fake upstream on loopback), with citations; streamed
over SSE, and over a realtime channel to a socket on the API process."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from tests.waiting import eventually

PASSWORD = "correct horse battery staple"
NOTES = "/collections/notes/records"
ASK = "/collections/notes/ask"


async def _client(stack) -> tuple[httpx.AsyncClient, dict]:
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=20)
    tokens = (
        await client.post(
            "/auth/signup",
            json={"email": f"ask-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        )
    ).json()
    client.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    return client, tokens


@pytest.fixture
async def alice(stack):
    client, tokens = await _client(stack)
    yield client, tokens
    await client.aclose()


@pytest.fixture
async def bob(stack):
    client, tokens = await _client(stack)
    yield client, tokens
    await client.aclose()


@pytest.fixture
async def notes(alice, bob):
    """Alice's notes about a rock named by a marker, and Bob's private one, all embedded."""
    marker = uuid.uuid4().hex[:8]
    client, _ = alice
    mine = []
    for title, body in [
        ("Basalt", f"{marker} basalt is cooled lava, dark and fine grained."),
        ("Pumice", f"{marker} pumice is lava foam, light enough to float."),
    ]:
        response = await client.post(NOTES, json={"title": title, "body": body})
        assert response.status_code == 201, response.text
        mine.append(response.json())
    secret = await bob[0].post(
        NOTES, json={"title": "Diary", "body": f"{marker} BOBSECRET lava basalt pumice"}
    )
    assert secret.status_code == 201

    async def embedded() -> bool:  # the relay and the worker embed them
        search = {"query": marker, "mode": "text", "k": 10}
        found = await client.post("/collections/notes/search", json=search)
        bobs = await bob[0].post("/collections/notes/search", json=search)
        return len(found.json()["items"]) == 2 and len(bobs.json()["items"]) == 1

    await eventually(embedded, what="the notes embedded")
    return marker, mine, secret.json()


async def test_notes_ask_answers_with_citations_of_what_the_caller_may_read(alice, notes, upstream):
    client, _ = alice
    marker, mine, secret = notes
    question = f"{marker} lava"  # text mode: both of alice's notes have both words
    response = await client.post(ASK, json={"question": question, "k": 2, "mode": "text"})
    assert response.status_code == 200, response.text
    body = response.json()
    citations = body["citations"]
    assert {c["record_id"] for c in citations} == {note["id"] for note in mine}
    assert [c["n"] for c in citations] == [1, 2]
    assert any("basalt is cooled lava" in c["chunk"]["content"] for c in citations)
    # The fake echoes the prompt it got: the question and the numbered passages, nothing else.
    assert body["answer"].startswith("echo: Passages:\n[1] ")
    assert body["answer"].endswith(f"Question: {question}")
    assert all(c["cited"] for c in citations)
    (call,) = [c for c in upstream.state.calls_with(question) if c.path == "/v1/chat/completions"]
    assert secret["id"] not in json.dumps(call.body) and "BOBSECRET" not in json.dumps(call.body)

    # Streamed: delta events, then done with the citations.
    async with client.stream(
        "POST", ASK, json={"question": question, "k": 2, "mode": "text", "stream": True}
    ) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        text = "".join([part async for part in streamed.aiter_text()])
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in text.replace("\r\n", "\n").strip().split("\n\n")
    ]
    assert {name for name, _ in events[:-1]} == {"delta"}
    name, done = events[-1]
    assert name == "done"
    assert "".join(data["content"] for _, data in events[:-1]) == done["answer"]
    assert done["answer"].split() == body["answer"].split()  # the fake streams word by word
    assert [c["record_id"] for c in done["citations"]] == [c["record_id"] for c in citations]


async def test_notes_ask_answers_over_the_callers_realtime_channel(stack, alice, notes):
    client, tokens = alice
    marker, mine, _ = notes
    channel = f"user:{tokens['user']['id']}"
    url = stack.base_url.replace("http://", "ws://") + "/realtime"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": tokens["access_token"]}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "ready"
        await socket.send(json.dumps({"type": "subscribe", "id": "me", "channel": channel}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "subscribed"
        response = await client.post(
            ASK, json={"question": f"{marker} lava", "k": 2, "mode": "text", "channel": channel}
        )
        assert response.status_code == 202, response.text
        ask_id = response.json()["ask_id"]
        frames = []
        while not frames or frames[-1]["event"] == "ask.delta":
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert frame["type"] == "broadcast" and frame["channel"] == channel, frame
            frames.append(frame)
    assert {f["payload"]["ask_id"] for f in frames} == {ask_id}
    done = frames[-1]
    assert done["event"] == "ask.done" and done["from"] is None
    assert "".join(f["payload"]["content"] for f in frames[:-1]) == done["payload"]["answer"]
    assert {c["record_id"] for c in done["payload"]["citations"]} == {n["id"] for n in mine}
    # Someone else's channel is refused.
    other = await client.post(ASK, json={"question": "pumice", "channel": f"user:{uuid.uuid4()}"})
    assert other.status_code == 403
