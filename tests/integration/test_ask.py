"""POST /collections/{c}/ask: retrieval under the caller's rules, rag_answer through the gateway,
citations; JSON, SSE and realtime channels; limits and refusals."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.channels import ChannelsPlugin
from litestar.testing import AsyncTestClient

from backend.app import create_app
from tests.integration.conftest import bearer
from tests.integration.test_prompt_runs import server_sent_events
from tests.integration.test_vectors import embed_all

ASK = "/collections/notes/ask"
NOTES = "/collections/notes/records"


@pytest.fixture
def settings(settings, upstream):
    return msgspec.structs.replace(
        settings, openai_api_key="sk-test", openai_base_url=upstream.base_url
    )


@pytest.fixture
async def app(settings, clock):
    return create_app(settings, clock=clock)


@pytest.fixture
async def client(app):
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def _person(sign_up):
    account = await sign_up()
    return account["user"]["id"], bearer(account["access_token"])


async def _note(client, headers, **data):
    response = await client.post(NOTES, json=data, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def library(client, sign_up, settings):
    """Alice's private notes, Bob's private note and Carol's public one, all about volcanoes."""
    alice, bob, carol = [await _person(sign_up) for _ in range(3)]
    notes = {
        "alice": [
            await _note(client, alice[1], title="Lava", body="Volcano lava is molten rock."),
            await _note(client, alice[1], title="Ash", body="A volcano eruption throws ash."),
            await _note(client, alice[1], title="Violin", body="A violin has four strings."),
        ],
        "bob": [
            await _note(
                client, bob[1], title="Diary", body="BOBSECRET volcano lava eruption notes."
            )
        ],
        "carol": [
            await _note(
                client, carol[1], title="Guide", body="Volcano guide: lava flows.", public=True
            )
        ],
    }
    await embed_all(settings)
    return {"alice": alice, "bob": bob, "carol": carol, "notes": notes}


async def _ask(client, headers, **body):
    response = await client.post(ASK, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _ask_over_channel(app, client, listen, headers, **body):
    """POST an ask that answers over a channel, and collect the frames published on ``listen``
    (the channel's internal name) up to the last one (the first that is not a delta)."""
    channels = app.plugins.get(ChannelsPlugin)
    subscriber = await channels.subscribe([listen])
    frames: list[dict] = []
    try:
        response = await client.post(ASK, json=body, headers=headers)
        assert response.status_code == 202, response.text

        async def until_last() -> None:
            async for raw in subscriber.iter_events():
                frames.append(msgspec.json.decode(raw))
                if frames[-1]["event"] != "ask.delta":
                    return
            raise AssertionError("the channel closed")

        await asyncio.wait_for(until_last(), 10)
    finally:
        await channels.unsubscribe(subscriber)
    return response.json(), frames


async def test_an_answer_cites_the_chunks_it_was_given(client, library, upstream):
    marker = uuid.uuid4().hex
    body = await _ask(client, library["alice"][1], question=f"What is volcano lava? {marker}", k=3)
    citations = body["citations"]
    assert [c["n"] for c in citations] == [1, 2, 3]
    mine = {n["id"] for n in library["notes"]["alice"]}
    public = {n["id"] for n in library["notes"]["carol"]}
    assert {c["record_id"] for c in citations} <= mine | public
    assert all({"record_id", "chunk", "score"} <= set(c) for c in citations)
    assert all(c["chunk"]["index"] == 0 and c["chunk"]["content"] for c in citations)
    scores = [c["score"] for c in citations]
    assert scores == sorted(scores, reverse=True)
    # The prompt showed the chunks numbered; the fake echoes the last message back.
    (call,) = upstream.state.calls_with(marker)
    user = call.body["messages"][-1]["content"]
    for c in citations:
        assert f"[{c['n']}] {c['chunk']['content']}" in user
    assert "[1]" in call.body["messages"][0]["content"]  # the system message asks for citations
    assert body["answer"] == f"echo: {user}"
    assert all(c["cited"] for c in citations)  # the echo repeats every [n]


async def test_no_chunk_a_caller_cannot_list_reaches_the_prompt(client, library, upstream):
    marker = uuid.uuid4().hex
    body = await _ask(client, library["alice"][1], question=f"volcano lava eruption {marker}", k=10)
    bob_note = library["notes"]["bob"][0]["id"]
    public = {n["id"] for n in library["notes"]["carol"]}
    # k is more than she may list: every record she may list, and nothing else.
    assert {c["record_id"] for c in body["citations"]} == {
        n["id"] for n in library["notes"]["alice"]
    } | public
    (call,) = upstream.state.calls_with(marker)
    assert "BOBSECRET" not in msgspec.json.encode(call.body).decode()
    # Bob, asking the same, gets his own note (and the public one), never alice's.
    other = uuid.uuid4().hex
    body = await _ask(client, library["bob"][1], question=f"volcano lava eruption {other}", k=10)
    assert {c["record_id"] for c in body["citations"]} == {bob_note} | public
    (call,) = upstream.state.calls_with(other)
    assert "BOBSECRET" in msgspec.json.encode(call.body).decode()
    assert "molten rock" not in msgspec.json.encode(call.body).decode()


async def test_filters_and_min_score_narrow_what_the_prompt_is_given(client, library, upstream):
    alice = library["alice"][1]
    ash = library["notes"]["alice"][1]
    body = await _ask(client, alice, question="volcano", k=5, filter="title = 'Ash'")
    assert [c["record_id"] for c in body["citations"]] == [ash["id"]]
    everything = await _ask(client, alice, question="volcano lava", k=5, mode="vector")
    scores = [c["score"] for c in everything["citations"]]
    assert len(scores) == 4  # everything she may list, however far
    cut = (scores[0] + scores[-1]) / 2
    marker = uuid.uuid4().hex
    close = await _ask(
        client, alice, question=f"volcano lava {marker}", k=5, mode="vector", min_score=cut
    )
    assert 1 <= len(close["citations"]) < 4
    assert all(c["score"] >= cut for c in close["citations"])
    (call,) = upstream.state.calls_with(marker)
    shown = call.body["messages"][-1]["content"]
    assert f"[{len(close['citations'])}] " in shown
    assert f"[{len(close['citations']) + 1}] " not in shown  # the far ones never reach it


async def test_a_streamed_answer_sends_deltas_then_citations(client, library, upstream):
    marker = uuid.uuid4().hex
    response = await client.post(
        ASK,
        json={"question": f"volcano ash {marker}", "k": 2, "stream": True},
        headers=library["alice"][1],
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = server_sent_events(response.text)
    assert [name for name, _ in events[:-1]] == ["delta"] * (len(events) - 1)
    name, done = events[-1]
    assert name == "done"
    assert "".join(data["content"] for _, data in events[:-1]) == done["answer"]
    assert [c["n"] for c in done["citations"]] == [1, 2]
    assert marker in done["answer"]
    (stream,) = upstream.state.streams_with(marker)
    assert await asyncio.to_thread(stream.ended.wait, 5)  # the fake marks it after [DONE]
    assert stream.outcome == "completed"


async def test_an_answer_over_the_callers_channel(app, client, library):
    user_id, headers = library["alice"]
    marker = uuid.uuid4().hex
    accepted, frames = await _ask_over_channel(
        app,
        client,
        f"user:{user_id}",
        headers,
        question=f"volcano {marker}",
        k=2,
        channel=f"user:{user_id}",
    )
    assert accepted["channel"] == f"user:{user_id}"
    assert {frame["payload"]["ask_id"] for frame in frames} == {accepted["ask_id"]}
    assert [f["event"] for f in frames[:-1]] == ["ask.delta"] * (len(frames) - 1)
    done = frames[-1]
    assert done["event"] == "ask.done", done
    answer = done["payload"]["answer"]
    assert "".join(f["payload"]["content"] for f in frames[:-1]) == answer
    assert marker in answer and len(done["payload"]["citations"]) == 2


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"question": "   "}, 422, "question"),
        ({"question": "x" * 4001}, 422, "question"),
        ({"question": "lava \u0000"}, 422, "question"),
        ({"question": "volcano", "k": 0}, 422, "k"),
        ({"question": "volcano", "k": 21}, 422, "k"),
        ({"question": "volcano", "channel": "collection:notes"}, 422, "channel"),
        ({"question": "volcano", "channel": "user:someone-else"}, 403, None),
        ({"question": "volcano", "channel": "room:lobby"}, 403, None),  # no active org
        ({"question": "volcano", "mode": "psychic"}, 422, "mode"),
        ({"k": 3}, 422, "question"),
        ({"question": "volcano", "filter": "title ="}, 422, "filter"),
        ({"question": "volcano", "filter": "nope = 1"}, 422, "filter"),
    ],
)
async def test_bad_asks_are_problems(client, sign_up, body, status, field):
    _, headers = await _person(sign_up)
    response = await client.post(ASK, json=body, headers=headers)
    assert response.status_code == status, response.text
    errors = response.json().get("errors", [])
    assert [e["field"] for e in errors] == ([field] if field else [])


async def test_only_collections_that_embed_can_be_asked(client, sign_up):
    _, headers = await _person(sign_up)
    response = await client.post(
        "/collections/projects/ask", json={"question": "x"}, headers=headers
    )
    assert response.status_code == 404
    assert (await client.post(ASK, json={"question": "volcano"})).status_code == 401


async def test_the_ask_limits_are_settings(settings, clock, sign_up):
    tight = msgspec.structs.replace(settings, ask_max_k=2, ask_max_question_chars=10)
    async with AsyncTestClient(create_app(tight, clock=clock)) as client:
        account = await client.post(
            "/auth/signup",
            json={"email": f"t-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        )
        headers = bearer(account.json()["access_token"])
        too_many = await client.post(ASK, json={"question": "lava", "k": 3}, headers=headers)
        assert too_many.status_code == 422 and "between 1 and 2" in too_many.json()["detail"]
        too_long = await client.post(ASK, json={"question": "x" * 11}, headers=headers)
        assert too_long.status_code == 422 and "10 characters" in too_long.json()["detail"]
        fine = await client.post(ASK, json={"question": "lava", "k": 2}, headers=headers)
        assert fine.status_code == 200, fine.text
        assert fine.json()["citations"] == []  # nothing embedded in this database yet


async def test_a_question_is_bounded_by_the_ask_setting_not_the_search_one(settings, clock):
    """An ask searches with its question: SEARCH_MAX_QUERY_CHARS must not refuse a question
    ASK_MAX_QUESTION_CHARS allows (nor name a `query` field the ask request does not have)."""
    tuned = msgspec.structs.replace(settings, search_max_query_chars=5, ask_max_question_chars=40)
    async with AsyncTestClient(create_app(tuned, clock=clock)) as client:
        _, headers = await _signed_up(client)
        asked = await client.post(ASK, json={"question": "where is the lava"}, headers=headers)
        assert asked.status_code == 200, asked.text
        searched = await client.post(
            "/collections/notes/search", json={"query": "where is the lava"}, headers=headers
        )
        assert searched.status_code == 422
        assert searched.json()["errors"][0]["field"] == "query"


async def test_a_missing_ask_prompt_is_503_before_any_search(settings, clock, tmp_path):
    empty = msgspec.structs.replace(settings, prompts_dir=str(tmp_path))
    async with AsyncTestClient(create_app(empty, clock=clock)) as client:
        account = await client.post(
            "/auth/signup",
            json={"email": f"m-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        )
        headers = bearer(account.json()["access_token"])
        response = await client.post(ASK, json={"question": "lava"}, headers=headers)
        assert response.status_code == 503
        assert "ASK_PROMPT" in response.json()["detail"]
        assert (await client.get("/ai/prompts", headers=headers)).json() == {
            "items": [],
            "next_cursor": None,
        }


async def test_answers_are_recorded_under_rag_answer(client, library, sql):
    marker = uuid.uuid4().hex
    await _ask(client, library["alice"][1], question=f"volcano {marker}", k=2)
    rows: list[tuple] = []
    for _ in range(100):  # the usage writer drains its queue in the background
        rows = sql("SELECT prompt_name, prompt_version FROM ai_usage WHERE prompt_name IS NOT NULL")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows == [("rag_answer", "2")]


# --- a misbehaving model: rag_answer pointed at one of the fake upstream's bad models ------


@pytest.fixture
def served_by(settings, tmp_path, upstream):
    """Settings whose rag_answer is answered by the fake upstream model named."""
    shipped = (Path(__file__).parents[2] / "prompts" / "rag_answer.yaml").read_text()

    def _settings(model: str, **extra):
        folder = tmp_path / model
        folder.mkdir()
        (folder / "rag_answer.yaml").write_text(
            shipped.replace("model: gpt-4o-mini", f"model: {model}")
        )
        return msgspec.structs.replace(
            settings, prompts_dir=str(folder), openai_models=(model,), **extra
        )

    return _settings


async def _signed_up(client):
    account = await client.post(
        "/auth/signup",
        json={"email": f"x-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
    )
    return account.json()["user"]["id"], bearer(account.json()["access_token"])


async def test_a_stream_that_breaks_ends_with_an_error_event(served_by, clock):
    async with AsyncTestClient(create_app(served_by("fake-broken-sse"), clock=clock)) as client:
        _, headers = await _signed_up(client)
        response = await client.post(
            ASK, json={"question": "lava", "stream": True}, headers=headers
        )
    assert response.status_code == 200, response.text
    events = server_sent_events(response.text)
    name, problem = events[-1]
    assert name == "error" and problem["status"] == 502
    assert "done" not in {name for name, _ in events}


async def test_a_channel_answer_that_breaks_ends_with_ask_error(served_by, clock):
    app = create_app(served_by("fake-broken-sse"), clock=clock)
    async with AsyncTestClient(app) as client:
        user_id, headers = await _signed_up(client)
        accepted, frames = await _ask_over_channel(
            app, client, f"user:{user_id}", headers, question="lava", channel=f"user:{user_id}"
        )
    frame = frames[-1]
    assert frame["event"] == "ask.error"
    assert frame["payload"]["ask_id"] == accepted["ask_id"]
    assert frame["payload"]["status"] == 502


async def test_a_refused_call_is_the_response_even_with_a_channel(served_by, clock):
    over = served_by("gpt-4o-mini", ai_user_tokens_per_period=1)
    async with AsyncTestClient(create_app(over, clock=clock)) as client:
        user_id, headers = await _signed_up(client)
        body = {"question": "lava", "channel": f"user:{user_id}"}
        for _ in range(2):  # each refusal gives its background slot back
            response = await client.post(ASK, json=body, headers=headers)
            assert response.status_code == 429, response.text
            assert response.json()["code"] == "budget_exceeded"


async def test_answers_over_channels_at_once_are_bounded(served_by, clock, upstream):
    tight = served_by("fake-trickle", ask_max_background=1)
    before = upstream.state.trickle_chunks, upstream.state.trickle_seconds
    upstream.state.trickle_chunks, upstream.state.trickle_seconds = 20, 0.05
    try:
        async with AsyncTestClient(create_app(tight, clock=clock)) as client:
            user_id, headers = await _signed_up(client)
            marker = uuid.uuid4().hex

            def ask(question: str):
                body = {"question": question, "channel": f"user:{user_id}"}
                # The test client serves a request (and its background work) to the end
                # before it returns, blocking its caller's loop: the first ask gets a thread.
                return asyncio.run(client.post(ASK, json=body, headers=headers))

            first = asyncio.create_task(asyncio.to_thread(ask, f"lava {marker}"))
            for _ in range(500):  # until the first answer is streaming in the background
                streams = upstream.state.streams_with(marker)
                if streams and streams[0].chunks_sent > 1:
                    break
                await asyncio.sleep(0.01)
            second = await client.post(
                ASK, json={"question": "lava", "channel": f"user:{user_id}"}, headers=headers
            )
            assert second.status_code == 429, second.text
            assert second.json()["code"] == "too_many_asks"
            assert (await first).status_code == 202
            stream = upstream.state.streams_with(marker)[0]
            assert await asyncio.to_thread(stream.ended.wait, 5)  # marked after [DONE]
            assert stream.outcome == "completed"
            third = await client.post(
                ASK, json={"question": "lava", "channel": f"user:{user_id}"}, headers=headers
            )
            assert third.status_code == 202, third.text
    finally:
        upstream.state.trickle_chunks, upstream.state.trickle_seconds = before


async def test_a_client_that_leaves_a_streamed_answer_cancels_the_upstream(
    served_by, clock, upstream
):
    """Over raw ASGI in this loop (the test client buffers whole responses): the client goes
    away after the first delta, and the fake upstream sees its stream closed early."""
    app = create_app(served_by("fake-trickle"), clock=clock)
    marker = uuid.uuid4().hex
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            account = await http.post(
                "/auth/signup",
                json={"email": f"d-{marker[:8]}@example.com", "password": "x" * 12},
            )
        token = account.json()["access_token"]
        body = json.dumps({"question": f"lava {marker}", "stream": True}).encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": ASK, "raw_path": ASK.encode(),
            "query_string": b"", "root_path": "", "server": ("test", 80),
            "client": ("127.0.0.1", 1234),
            "headers": [
                (b"host", b"test"), (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", f"Bearer {token}".encode()),
            ],
        }  # fmt: skip
        sent: list[dict] = []
        first_delta = asyncio.Event()
        requested = False

        async def receive() -> dict:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": body, "more_body": False}
            await first_delta.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if b"event: delta" in message.get("body", b""):
                first_delta.set()

        await asyncio.wait_for(app(scope, receive, send), 10)
    assert sent[0]["status"] == 200
    (stream,) = upstream.state.streams_with(marker)
    assert await asyncio.to_thread(stream.ended.wait, 5)
    assert stream.outcome == "cancelled"
    assert stream.chunks_sent < upstream.state.trickle_chunks


async def test_an_answer_over_a_room_of_the_callers_org(app, client, library, sign_up):
    account = await sign_up()
    headers = bearer(account["access_token"])
    org = (await client.post("/orgs", json={"name": "Geology"}, headers=headers)).json()
    refreshed = await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": account["refresh_token"]},
    )
    in_org = bearer(refreshed.json()["access_token"])  # the new org is the active one
    _, frames = await _ask_over_channel(
        app,
        client,
        f"room:{org['id']}:lobby",  # what room:lobby is
        in_org,
        question="volcano",
        k=1,
        channel="room:lobby",
    )
    frame = frames[-1]
    assert frame["event"] == "ask.done"
    # Only what this user may list: carol's public note.
    public = {n["id"] for n in library["notes"]["carol"]}
    assert {c["record_id"] for c in frame["payload"]["citations"]} == public


async def test_no_channel_answers_without_realtime(settings, clock):
    off = msgspec.structs.replace(settings, realtime_enabled=False)
    async with AsyncTestClient(create_app(off, clock=clock)) as client:
        user_id, headers = await _signed_up(client)
        response = await client.post(
            ASK, json={"question": "lava", "channel": f"user:{user_id}"}, headers=headers
        )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "channel"
    assert "REALTIME_ENABLED" in response.json()["errors"][0]["message"]
