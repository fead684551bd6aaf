"""The model gateway against the fake upstream: OpenAI's wire format (JSON and SSE), pass-
through, fallbacks in order, failures, usage rows and reports, budgets and limits."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec
import pytest

from backend.ai.catalog import ModelAlias, Provider
from backend.lib.upstream import ProviderClient
from tests.integration.conftest import bearer

GATEWAY_MODELS = """
providers:
  fake: {{base_url: "{base_url}", api_key: sk-fake-secret}}
  nowhere: {{base_url: "http://127.0.0.1:9/v1", api_key: sk-nowhere}}
models:
  chat: {{provider: fake, model: fake-chat, retries: 0}}
  embed: {{provider: fake, model: fake-embed, retries: 0}}
  flaky: {{provider: fake, model: fake-500, retries: 0, fallbacks: [slow, garbage, chat]}}
  slow: {{provider: fake, model: fake-slow, timeout_seconds: 0.3, retries: 0}}
  garbage: {{provider: fake, model: fake-malformed, retries: 0}}
  doomed: {{provider: fake, model: fake-500, retries: 0, fallbacks: [nowhere, shapeless]}}
  nowhere: {{provider: nowhere, model: fake-chat, retries: 0, timeout_seconds: 1}}
  shapeless: {{provider: fake, model: fake-wrong-shape, retries: 0}}
  sse-garbage: {{provider: fake, model: fake-garbage-sse, retries: 0, fallbacks: [chat]}}
  sse-broken: {{provider: fake, model: fake-broken-sse, retries: 0}}
  refuses: {{provider: fake, model: fake-400, retries: 0, fallbacks: [chat]}}
  mute: {{provider: fake, model: fake-no-usage, retries: 0}}
  sturdy: {{provider: fake, model: fake-embed, retries: 2}}
"""


@pytest.fixture
def settings(settings, upstream, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(GATEWAY_MODELS.format(base_url=upstream.base_url))
    return msgspec.structs.replace(
        settings,
        models_file=str(path),
        ai_usage_flush_seconds=0.05,
        ai_max_body_bytes=20_000,
        max_body_bytes=4096,
    )


@pytest.fixture
async def alice(sign_up):
    return await sign_up()


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def chat_body(text: str, model: str = "chat", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sse_events(text: str) -> list[Any]:
    """The data of each server-sent event, JSON-decoded (``[DONE]`` kept as a string)."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_models_lists_the_aliases(client, alice):
    response = await client.get("/v1/models", headers=bearer(alice["access_token"]))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    ids = {model["id"] for model in body["data"]}
    assert {"chat", "embed", "flaky"} <= ids
    assert all(model["object"] == "model" for model in body["data"])


async def test_no_credentials_is_401_problem_with_openai_error(client):
    response = await client.post("/v1/chat/completions", json=chat_body("hi"))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["message"]


async def test_chat_json_passes_the_body_through(client, alice, upstream, settings):
    tag = marker()
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body = chat_body(
        f"find {tag}",
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        stop=["zzz"],
        n=2,
        temperature=0.2,
        user="end-user-7",
        seed=42,
    )
    response = await client.post(
        "/v1/chat/completions", json=body, headers=bearer(alice["access_token"])
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "chat"
    assert len(data["choices"]) == 2
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert data["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert (
        data["usage"]["total_tokens"]
        == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )
    (call,) = upstream.state.calls_with(tag)
    assert call.path == "/v1/chat/completions"
    assert call.authorization == "Bearer sk-fake-secret"  # the provider's key, not the caller's
    sent = dict(call.body)
    assert sent.pop("model") == "fake-chat"
    # Passed through as sent, but for the completion limit the call reserved (none was named).
    assert sent.pop("max_tokens") == settings.ai_completion_reserve_tokens
    expected = dict(body)
    expected.pop("model")
    assert sent == expected


async def test_stream_is_openai_sse_ending_in_done(client, alice):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(f"say {tag} now", stream=True),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream"), response.text[:500]
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    # Byte for byte OpenAI's framing: `data: …` lines ended by \n, a blank line after each.
    assert response.content.startswith(b'data: {"') and b"\r" not in response.content
    assert response.content.endswith(b"}\n\ndata: [DONE]\n\n")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "chat" for c in chunks)
    assert all("usage" not in c for c in chunks)  # not asked for: not sent
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == f"echo: say {tag} now"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_with_include_usage_ends_with_a_usage_chunk(client, alice, upstream):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(f"count {tag}", stream=True, stream_options={"include_usage": True}),
        headers=bearer(alice["access_token"]),
    )
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in events[:-2])
    (call,) = upstream.state.calls_with(tag)
    assert call.body["stream_options"] == {"include_usage": True}


async def test_upstream_is_always_asked_for_stream_usage(client, alice, upstream):
    tag = marker()
    await client.post(
        "/v1/chat/completions",
        json=chat_body(tag, stream=True),
        headers=bearer(alice["access_token"]),
    )
    (call,) = upstream.state.calls_with(tag)
    assert call.body["stream_options"] == {"include_usage": True}


async def test_fallbacks_are_tried_in_order(client, alice, upstream):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(tag, model="flaky"),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "flaky"
    tried = [call.body["model"] for call in upstream.state.calls_with(tag)]
    # 500, then a timeout, then malformed JSON, then an answer.
    assert tried == ["fake-500", "fake-slow", "fake-malformed", "fake-chat"]


async def test_nothing_left_is_502_without_upstream_internals(client, alice, upstream):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(tag, model="doomed"),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    text = response.text
    body = response.json()
    assert body["code"] == "upstream_error"
    assert body["error"]["type"] == "server_error"
    port = upstream.base_url.rsplit(":", 1)[1].split("/")[0]
    for secret in (port, "127.0.0.1", "sk-", "upstream says", "fake-500", "fake-wrong-shape"):
        assert secret not in text
    tried = [call.body["model"] for call in upstream.state.calls_with(tag)]
    assert tried == ["fake-500", "fake-wrong-shape"]  # `nowhere` refused the connection


async def test_a_refused_request_is_400_and_not_retried_elsewhere(client, alice, upstream):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(tag, model="refuses"),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "upstream_rejected"
    assert [call.body["model"] for call in upstream.state.calls_with(tag)] == ["fake-400"]


async def test_stream_falls_back_when_the_first_event_is_garbage(client, alice, upstream):
    tag = marker()
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(tag, model="sse-garbage", stream=True),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert [call.body["model"] for call in upstream.state.calls_with(tag)] == [
        "fake-garbage-sse",
        "fake-chat",
    ]


async def test_a_stream_broken_midway_ends_with_an_error_event(client, alice):
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(marker(), model="sse-broken", stream=True),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[0]["object"] == "chat.completion.chunk"
    assert events[-1]["error"]["code"] == "upstream_error"
    assert "[DONE]" not in events


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (chat_body("x", model="gpt-nope"), 404, "model"),
        ({"messages": [{"role": "user", "content": "x"}]}, 422, "model"),
        ({"model": "chat", "messages": []}, 422, "messages"),
        ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": "y"}, 422,
         "stream"),
        # Budgets hold max_tokens x n in 64-bit Redis counters: these overflowed it, a 500.
        (chat_body("x", max_tokens=10**30), 422, "max_tokens"),
        (chat_body("x", max_completion_tokens=0), 422, "max_completion_tokens"),
        (chat_body("x", n=129), 422, "n"),
        (chat_body("x", stream=True, max_tokens=2**63), 422, "max_tokens"),
    ],
)  # fmt: skip
async def test_bad_requests_name_the_field(client, alice, body, status, field):
    response = await client.post(
        "/v1/chat/completions", json=body, headers=bearer(alice["access_token"])
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert problem["error"]["param"] == field


async def test_v1_takes_bodies_up_to_its_own_limit(client, alice):
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body("x" * 10_000),  # over MAX_BODY_BYTES, within AI_MAX_BODY_BYTES
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text


async def test_a_body_over_the_limit_is_413(client, alice):
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body("x" * 30_000),
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "AI_MAX_BODY_BYTES" in response.json()["detail"]


async def test_embeddings(client, alice):
    response = await client.post(
        "/v1/embeddings",
        json={"model": "embed", "input": ["one two", "three"]},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "embed"
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 3


@pytest.mark.parametrize(
    ("data", "count"), [("one", 1), ([1, 2, 3], 1), ([[1, 2], [3]], 2), (["a", "b"], 2)]
)
async def test_embeddings_take_openais_input_shapes(client, alice, data, count):
    response = await client.post(
        "/v1/embeddings",
        json={"model": "embed", "input": data},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == count


# These were sent upstream as they came, and the provider's refusal became a 502.
@pytest.mark.parametrize("data", [5, [1.5], [["a"]], [[]], ["a", 1], {"text": "a"}, True])
async def test_embeddings_of_another_shape_are_a_422_on_input(client, alice, upstream, data):
    response = await client.post(
        "/v1/embeddings",
        json={"model": "embed", "input": data},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "input"


def _calls_with(upstream, text: str) -> int:
    return sum(1 for call in upstream.state.calls if text in json.dumps(call.body))


async def test_an_alias_with_retries_gets_over_a_passing_failure(client, alice, upstream):
    text = f"[[500-once]] {marker()}"  # the provider fails the first time it sees this
    response = await client.post(
        "/v1/embeddings",
        json={"model": "sturdy", "input": text},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 200, response.text
    assert _calls_with(upstream, text) == 2

    again = f"[[500-once]] {marker()}"
    response = await client.post(
        "/v1/embeddings",
        json={"model": "embed", "input": again},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 502  # retries: 0, and no fallback
    assert _calls_with(upstream, again) == 1


async def test_retries_stop_at_the_aliases_count(client, alice, upstream):
    text = f"[[429]] {marker()}"  # always 429, with retry-after-ms: 20
    response = await client.post(
        "/v1/embeddings",
        json={"model": "sturdy", "input": text},
        headers=bearer(alice["access_token"]),
    )
    assert response.status_code == 502, response.text
    assert "429" not in response.text  # no upstream internals
    assert _calls_with(upstream, text) == 3  # the call and its two retries


async def test_a_provider_is_reached_through_the_environments_proxy(monkeypatch):
    """HTTP_PROXY / HTTPS_PROXY are honoured, as the openai client (httpx) honoured them."""
    request_lines: list[bytes] = []
    answer = msgspec.json.encode(
        {
            "id": "chatcmpl-proxied",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "via proxy"}}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }
    )

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        request_lines.append(head.split(b"\r\n")[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    client = ProviderClient(Provider("far", "http://models.invalid/v1", "sk-far"))
    try:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        data = await client.complete(ModelAlias("far", "far", "far-model", 5.0, 0, ()), body)
    finally:
        await client.close()
        server.close()
    assert data["choices"][0]["message"]["content"] == "via proxy"
    assert request_lines == [b"POST http://models.invalid/v1/chat/completions HTTP/1.1"]
