"""The usage buffer: events wait in Redis until Postgres takes them, are written once, and a
drainer that outlived its lock cannot trim events it never read. Without Redis, calls are
refused (no budget can be held), never made unmetered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from backend.ai.usage import USAGE_QUEUE, UsageEvent, UsageWriter
from backend.lib.urls import async_database_url
from tests.support import with_database


def event() -> UsageEvent:
    return UsageEvent(
        id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        user_id=uuid.uuid4(),
        api_key_id=None,
        org_id=None,
        kind="chat",
        model="chat",
        upstream_model="fake-chat",
        prompt_tokens=3,
        completion_tokens=4,
        latency_ms=1.5,
        outcome="ok",
    )


@pytest.fixture
async def redis(redis_url):
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def writer(redis, database_url, settings):
    engine = create_async_engine(async_database_url(database_url))
    yield UsageWriter(redis, engine, settings)
    await engine.dispose()


def count_rows(sql) -> int:
    return sql("SELECT count(*) FROM ai_usage")[0][0]


async def test_events_wait_in_redis_while_postgres_is_away(
    redis, writer, database_url, settings, sql
):
    events = [msgspec.json.encode(event()) for _ in range(3)]
    await redis.rpush(USAGE_QUEUE, *events)
    gone = create_async_engine(async_database_url(with_database(database_url, "no_such_db")))
    with pytest.raises(Exception, match="no_such_db"):
        await UsageWriter(redis, gone, settings).drain()
    await gone.dispose()
    assert await redis.llen(USAGE_QUEUE) == 3
    assert await writer.drain() == 3
    assert count_rows(sql) == 3
    assert await redis.llen(USAGE_QUEUE) == 0


async def test_an_event_read_twice_is_written_once(redis, writer, sql):
    twice = msgspec.json.encode(event())
    await redis.rpush(USAGE_QUEUE, twice, twice)
    assert await writer.drain() == 2
    assert count_rows(sql) == 1


async def test_a_stale_drainer_trims_nothing_it_did_not_read(redis, writer, sql):
    await redis.rpush(USAGE_QUEUE, *[msgspec.json.encode(event()) for _ in range(2)])
    stale = await redis.lrange(USAGE_QUEUE, 0, 1)  # read by a drainer that then stalled
    assert await writer.drain() == 2  # another drainer wrote and trimmed them
    await redis.rpush(USAGE_QUEUE, *[msgspec.json.encode(event()) for _ in range(2)])
    assert await writer._trim(keys=[USAGE_QUEUE], args=[stale[0], len(stale)]) == 0
    assert await redis.llen(USAGE_QUEUE) == 2
    assert await writer.drain() == 2
    assert count_rows(sql) == 4


async def test_without_redis_calls_are_refused_before_any_upstream_call(settings, upstream):
    from backend.ai.catalog import parse_models
    from backend.ai.gateway import Gateway
    from backend.errors import Unavailable
    from backend.identity import Principal
    from backend.lib.clock import SystemClock

    catalog = parse_models(
        f'providers:\n  fake: {{base_url: "{upstream.base_url}", api_key: k}}\n'
        "models:\n  chat: {provider: fake, model: fake-chat}\n",
        settings,
        environ={},
    )
    nowhere = Redis.from_url("redis://127.0.0.1:9/0")
    gateway = Gateway(catalog, settings, nowhere, SystemClock())
    tag = uuid.uuid4().hex
    principal = Principal(user_id=uuid.uuid4(), role="user", org_id=None)
    body = {"model": "chat", "messages": [{"role": "user", "content": tag}]}
    with pytest.raises(Unavailable) as refused:  # 503
        await gateway.complete(principal, body)
    assert refused.value.headers == {"Retry-After": "1"}
    assert upstream.state.calls_with(tag) == []
    await gateway.close()
    await nowhere.aclose()
