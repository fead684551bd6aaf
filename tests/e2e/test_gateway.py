"""The model gateway through the real stack with the official openai client: a streamed
chat completion with its usage recorded, a budget enforced, errors as the client's own
exceptions, a client leaving mid-stream closing the upstream stream, and the usage rollup
through a real worker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import openai
import pytest

from backend.config import settings_from_env
from tests.e2e.conftest import sql
from tests.waiting import eventually
from workers.celery_app import create_celery_app

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def account(stack) -> dict[str, Any]:
    """A user with an API key: {"user", "token", "key", "key_id"}."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        email = f"gw-{uuid.uuid4().hex[:8]}@example.com"
        tokens = (
            await http.post("/auth/signup", json={"email": email, "password": PASSWORD})
        ).json()
        created = (
            await http.post(
                "/auth/api-keys",
                json={"name": "sdk"},
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
            )
        ).json()
    return {
        "user": tokens["user"],
        "email": email,
        "token": tokens["access_token"],
        "key": created["key"],
        "key_id": created["api_key"]["id"],
    }


def sdk(stack, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key=api_key, max_retries=0)


async def test_the_openai_client_streams_and_its_usage_is_recorded(stack, account):
    client = sdk(stack, account["key"])
    models = await client.models.list()
    assert "chat" in {model.id for model in models.data}
    assert (await client.models.retrieve("chat")).id == "chat"
    tag = uuid.uuid4().hex[:8]
    stream = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": f"stream {tag} please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == f"echo: stream {tag} please"
    assert usage is not None and usage.completion_tokens == 4
    rows = await eventually(
        lambda: sql(
            stack,
            "SELECT model, upstream_model, prompt_tokens, completion_tokens, outcome, user_id"
            " FROM ai_usage WHERE api_key_id = %s",
            account["key_id"],
        )
    )
    ((model, upstream_model, prompt, completion, outcome, user_id),) = rows
    assert (model, upstream_model, outcome) == ("chat", "fake-chat", "ok")
    assert (prompt, completion) == (usage.prompt_tokens, usage.completion_tokens)
    assert str(user_id) == account["user"]["id"]

    answer = await client.chat.completions.create(
        model="flaky", messages=[{"role": "user", "content": "json please"}]
    )
    assert answer.choices[0].message.content == "echo: json please"  # after a fallback
    vectors = await client.embeddings.create(model="embed", input=["a b", "c"])
    assert [item.index for item in vectors.data] == [0, 1]
    await client.close()


async def test_a_budget_is_enforced_for_the_openai_client(stack, account):
    admin = account  # made admin below, then signed in again for a token with the role
    sql(stack, "UPDATE users SET role = 'admin' WHERE id = %s", account["user"]["id"])
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http:
        token = (
            await http.post(
                "/auth/token",
                json={"grant_type": "password", "email": admin["email"], "password": PASSWORD},
            )
        ).json()["access_token"]
        put = await http.put(
            f"/ai/budgets/key/{account['key_id']}",
            json={"tokens_per_period": 30},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert put.status_code == 200, put.text
    client = sdk(stack, account["key"])
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    # Each call reserves 26 (6 estimated for the prompt, 20 max_tokens) and spends 3.
    first = await client.chat.completions.create(**body)
    assert first.choices[0].message.content == "echo: hi"
    await client.chat.completions.create(**body)  # 3 spent + 26 held fits in 30
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(**body)  # 6 + 26 does not
    assert refused.value.code == "budget_exceeded"
    assert refused.value.response.headers["retry-after"]
    await client.close()


async def test_errors_are_the_clients_own_exceptions(stack, account):
    client = sdk(stack, account["key"])
    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-nope")
    with pytest.raises(openai.AuthenticationError):
        await sdk(stack, "lb_not_a_key").models.list()
    await client.close()


async def test_a_client_leaving_mid_stream_closes_the_upstream_stream(stack, account, upstream):
    tag = uuid.uuid4().hex[:8]
    body = {"model": "trickle", "messages": [{"role": "user", "content": tag}], "stream": True}
    async with (
        httpx.AsyncClient(base_url=stack.base_url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {account['key']}"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = 0
        async for line in response.aiter_lines():
            lines += line.startswith("data: ")
            if lines == 3:
                break
    (record,) = await eventually(lambda: upstream.state.streams_with(tag))
    assert await asyncio.to_thread(record.ended.wait, 10), "upstream stream still open"
    assert record.outcome == "cancelled"
    assert record.chunks_sent < upstream.state.trickle_chunks
    rows = await eventually(
        lambda: sql(
            stack,
            "SELECT outcome, completion_tokens FROM ai_usage WHERE api_key_id = %s",
            account["key_id"],
        )
    )
    assert rows[0][0] == "cancelled" and rows[0][1] >= 1


async def test_the_usage_rollup_runs_on_a_worker(stack, account):
    old = uuid.uuid4()
    sql(
        stack,
        "INSERT INTO ai_usage (id, created_at, user_id, kind, model, prompt_tokens,"
        " completion_tokens, latency_ms, outcome)"
        " VALUES (%s, now() - interval '400 days', %s, 'chat', 'chat', 3, 4, 1.0, 'ok')",
        old,
        account["user"]["id"],
    )
    celery = create_celery_app(
        settings_from_env(
            {}, env="test", database_url=stack.database_url, redis_url=stack.redis_url
        )
    )
    celery.send_task("ai.rollup_usage")  # on the stack's worker; its effect is what counts
    await eventually(
        lambda: sql(stack, "SELECT count(*) FROM ai_usage WHERE id = %s", old) == [(0,)],
        what="the worker rolling the old usage up",
    )
    assert sql(
        stack,
        "SELECT sum(prompt_tokens + completion_tokens) FROM ai_usage_daily WHERE user_id = %s",
        account["user"]["id"],
    ) == [(7,)]
