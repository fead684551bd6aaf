"""Prompt runs through the real gateway against the fake upstream: JSON, SSE, 422s, usage."""

from __future__ import annotations

import asyncio
import json
import uuid

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from tests.integration.conftest import bearer

RUN = "/ai/prompts/{}/run"


@pytest.fixture
def settings(settings, upstream):
    """The gateway's OPENAI_* shortcut pointed at the fake upstream (aliases gpt-4o-mini …)."""
    return msgspec.structs.replace(
        settings,
        openai_api_key="sk-test",
        openai_base_url=upstream.base_url,
        ai_usage_flush_seconds=0.05,
    )


@pytest.fixture
async def client(settings, clock):
    async with AsyncTestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


@pytest.fixture
async def alice(sign_up):
    return bearer((await sign_up())["access_token"])


def server_sent_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) for each event of a text/event-stream body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


async def test_prompts_are_listed_with_their_input_schemas(client, alice):
    response = await client.get("/ai/prompts", headers=alice)
    assert response.status_code == 200, response.text
    items = {item["name"]: item for item in response.json()["items"]}
    assert {"rag_answer", "summarize", "extract_json"} <= set(items)
    summarize = items["summarize"]
    assert summarize["version"] == "1" and summarize["model"] == "gpt-4o-mini"
    assert summarize["input_schema"]["required"] == ["text"]
    assert "messages" not in summarize  # the templates stay on the server
    assert (await client.get("/ai/prompts")).status_code == 401


async def test_a_run_renders_the_prompt_and_answers_through_the_gateway(client, alice, upstream):
    marker = uuid.uuid4().hex
    text = f"The {marker} meeting moved to Tuesday 3 June at 10:00 in room 4."
    response = await client.post(
        RUN.format("summarize"),
        json={"variables": {"text": text, "style": "bullets", "length": 2}},
        headers=alice,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"] == {"name": "summarize", "version": "1"}
    assert body["model"] == "gpt-4o-mini"
    assert body["output"].startswith("echo: ") and marker in body["output"]
    assert body["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert "data" not in body  # not a JSON prompt
    (call,) = upstream.state.calls_with(marker)
    assert call.path == "/v1/chat/completions"
    assert call.body["model"] == "gpt-4o-mini"
    assert call.body["temperature"] == 0.2 and call.body["max_tokens"] == 600
    system, user = call.body["messages"]
    assert system["role"] == "system" and "faithful summaries" in system["content"]
    assert "at most 2 bullet points" in user["content"] and text in user["content"]


async def test_extract_json_answers_parsed_data(client, alice, upstream):
    marker = uuid.uuid4().hex
    schema = {"type": "object", "properties": {"who": {"type": "string"}}}
    response = await client.post(
        RUN.format("extract_json"),
        json={"variables": {"text": f"{marker} called", "schema": schema}},
        headers=alice,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    # The fake answers {"echo": <last message>} when asked for a JSON object.
    assert body["data"] == json.loads(body["output"])
    assert marker in body["data"]["echo"]
    (call,) = upstream.state.calls_with(marker)
    assert call.body["response_format"] == {"type": "json_object"}
    assert json.dumps(schema, sort_keys=True) in call.body["messages"][0]["content"]


async def test_a_streamed_run_sends_deltas_then_the_result(client, alice, upstream):
    marker = uuid.uuid4().hex
    response = await client.post(
        RUN.format("summarize"),
        json={"variables": {"text": f"one two three {marker}"}, "stream": True},
        headers=alice,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = server_sent_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"delta"} and len(names) > 3
    done = events[-1][1]
    assert "".join(data["content"] for _, data in events[:-1]) == done["output"]
    assert marker in done["output"]
    assert done["prompt"] == {"name": "summarize", "version": "1"}
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == len(done["output"].split())
    (stream,) = upstream.state.streams_with(marker)
    assert await asyncio.to_thread(stream.ended.wait, 5)  # the fake marks it after [DONE]
    assert stream.outcome == "completed"


@pytest.mark.parametrize(
    ("name", "body", "status", "fields"),
    [
        ("summarize", {"variables": {}}, 422, {"variables.text"}),
        (
            "summarize",
            {"variables": {"text": "x", "length": 99, "style": "haiku", "tone": "dry"}},
            422,
            {"variables.length", "variables.style", "variables.tone"},
        ),
        ("summarize", {"variables": {"text": 5}, "stream": True}, 422, {"variables.text"}),
        ("rag_answer", {"variables": {"question": "q", "context": [{"n": 1}]}}, 422,
         {"variables.context.0.text"}),
        ("summarize", {"variables": {"text": "x"}, "temperature": 2}, 422, {"temperature"}),
        ("nope", {"variables": {}}, 404, set()),
    ],
)  # fmt: skip
async def test_bad_runs_are_problems_naming_the_fields(client, alice, name, body, status, fields):
    response = await client.post(RUN.format(name), json=body, headers=alice)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {error["field"] for error in response.json().get("errors", [])} == fields


async def test_a_run_needs_a_caller(client):
    response = await client.post(RUN.format("summarize"), json={"variables": {"text": "x"}})
    assert response.status_code == 401


async def test_runs_are_recorded_under_the_prompt(client, alice, sql):
    for stream in (False, True):
        response = await client.post(
            RUN.format("summarize"),
            json={"variables": {"text": "usage counts"}, "stream": stream},
            headers=alice,
        )
        assert response.status_code == 200, response.text
    rows: list[tuple] = []
    for _ in range(100):  # the usage writer drains its queue every AI_USAGE_FLUSH_SECONDS
        rows = sql(
            "SELECT prompt_name, prompt_version, model, prompt_tokens, completion_tokens"
            " FROM ai_usage WHERE prompt_name IS NOT NULL"
        )
        if len(rows) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 2
    for prompt_name, prompt_version, model, prompt_tokens, completion_tokens in rows:
        assert (prompt_name, prompt_version, model) == ("summarize", "1", "gpt-4o-mini")
        assert prompt_tokens > 0 and completion_tokens > 0


async def test_a_refused_stream_is_a_problem_not_a_stream(client, alice, settings, clock):
    over = msgspec.structs.replace(settings, ai_user_tokens_per_period=1)
    async with AsyncTestClient(create_app(over, clock=clock)) as tight:
        signed = await tight.post(
            "/auth/signup",
            json={"email": f"b-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
        )
        headers = bearer(signed.json()["access_token"])
        response = await tight.post(
            RUN.format("summarize"),
            json={"variables": {"text": "a long enough text"}, "stream": True},
            headers=headers,
        )
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
