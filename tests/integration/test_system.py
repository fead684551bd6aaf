"""/health, /ready, /metrics, OpenAPI, and the error contract (problem+json, 413, 500)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest
from litestar import get, post
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.app import create_app
from backend.config import Settings
from backend.db.migrate import downgrade
from backend.lib.embedded import EmbeddedRedis

PROBLEM = "application/problem+json"


async def test_health_says_the_process_is_up(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_postgres_redis_and_migrations(client):
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "redis": "ok", "migrations": "ok"},
    }


async def _ready(settings: Settings):
    async with AsyncTestClient(create_app(settings)) as test_client:
        return await test_client.get("/ready")


async def test_ready_is_503_naming_redis_when_redis_is_stopped(settings, tmp_path: Path):
    stopped = EmbeddedRedis(tmp_path / "redis", persistent=False)
    url = stopped.start()
    stopped.stop()
    response = await _ready(msgspec.structs.replace(settings, redis_url=url))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["detail"] == "Not ready: redis"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] != "ok"


async def test_ready_is_503_naming_postgres_when_postgres_is_unreachable(settings, tmp_path):
    gone = f"postgresql://postgres:@/postgres?host={tmp_path}"
    response = await _ready(
        msgspec.structs.replace(settings, database_url=gone, ready_timeout_seconds=1.0)
    )
    assert response.status_code == 503
    body = response.json()
    assert body["detail"].startswith("Not ready: postgres")
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgres"] != "ok"


async def test_ready_is_503_naming_migrations_when_the_database_is_behind(settings, database_url):
    downgrade(database_url, "base")
    response = await _ready(settings)
    assert response.status_code == 503
    assert response.json()["detail"] == "Not ready: migrations"
    # An anonymous caller learns which check fails, not why (the API's log says why).
    assert response.json()["checks"]["migrations"] == "failing"


async def test_a_burst_beyond_the_redis_pool_waits_for_connections_instead_of_failing(settings):
    # The app's one Redis client (sessions, budgets, rate limits, channels): 12 callers that
    # each hold a connection for 0.2 s share a pool of 3, so some must wait their turn.
    app = create_app(msgspec.structs.replace(settings, redis_max_connections=3))
    redis = app.state.redis
    try:
        results = await asyncio.gather(
            *(redis.execute_command("BLPOP", "litebase:test:nothing", 0.2) for _ in range(12))
        )
    finally:
        await redis.aclose()
    assert results == [None] * 12


async def test_metrics_are_exposed_for_prometheus(settings):
    with_token = msgspec.structs.replace(settings, metrics_token="scrape-me")
    async with AsyncTestClient(create_app(with_token)) as client:
        await client.get("/health")
        response = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert response.status_code == 200
    assert "litebase_requests_total" in response.text


async def test_openapi_is_3_1_with_docs(client):
    document = (await client.get("/schema/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert {"/health", "/ready"} <= set(document["paths"])
    assert (await client.get("/schema")).status_code == 200


async def test_every_response_carries_a_request_id(client):
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    echoed = await client.get("/health", headers={"x-request-id": "trace-me-123"})
    assert echoed.headers["x-request-id"] == "trace-me-123"


async def test_unknown_route_is_problem_json(client):
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["title"] == "Not Found"


class Echo(msgspec.Struct):
    text: str
    count: int


@post("/test/echo", sync_to_thread=False)
def echo(data: Echo) -> Echo:
    return data


@post("/test/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("secret internal detail")


def failing_middleware(app: ASGIApp) -> ASGIApp:
    """A route middleware that fails, as the rate limiter does when its store is unreachable."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        raise ConnectionError("secret store address 10.0.0.7:6379")

    return middleware


@get("/test/middleware-boom", middleware=[failing_middleware], sync_to_thread=False)
def behind_a_failing_middleware() -> None:
    return None


@pytest.fixture
async def app_client(settings):
    small = msgspec.structs.replace(settings, max_body_bytes=64)
    routes = [echo, boom, behind_a_failing_middleware]
    async with AsyncTestClient(create_app(small, route_handlers=routes)) as test_client:
        yield test_client


async def test_a_body_over_max_body_bytes_is_413(app_client):
    fits = await app_client.post("/test/echo", json={"text": "hi", "count": 1})
    assert fits.status_code == 201
    response = await app_client.post("/test/echo", json={"text": "x" * 100, "count": 1})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "MAX_BODY_BYTES" in response.json()["detail"]


async def test_a_bad_field_is_named_in_errors(app_client):
    response = await app_client.post("/test/echo", json={"text": "hi", "count": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"][0]["field"] == "count"
    assert body["title"] == "Unprocessable Entity"


async def test_an_unexpected_error_is_500_without_a_stack_trace(app_client):
    response = await app_client.post("/test/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(PROBLEM)
    text = response.text
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_an_error_in_a_route_middleware_is_a_500_problem_with_the_request_id(
    app_client, caplog
):
    response = await app_client.get("/test/middleware-boom", headers={"x-request-id": "trace-500"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["x-request-id"] == "trace-500"
    assert response.json()["request_id"] == "trace-500"
    assert "10.0.0.7" not in response.text
    assert any("10.0.0.7" in str(r.exc_info) for r in caplog.records if r.exc_info)


def test_create_app_refuses_prod_with_a_placeholder_secret(monkeypatch, database_url, redis_url):
    from backend.config import SettingsError, get_settings

    monkeypatch.setenv("LITEBASE_ENV", "prod")
    monkeypatch.setenv("SECRET_KEY", "change-me")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            create_app()
    finally:
        get_settings.cache_clear()


def test_beat_reports_each_queues_depth_and_their_sum_as_metric_lines(settings, capsys):
    import json

    import msgspec

    from workers.celery_app import create_celery_app

    app = create_celery_app(
        msgspec.structs.replace(settings, queue_metrics_namespace="Litebase/test")
    )
    assert "queue-metrics" in app.conf.beat_schedule
    app.loader.import_default_modules()  # as a worker does: the task modules register
    queues = ("celery", "mail", "jobs")
    app.redis().delete(*queues)
    app.redis().rpush("celery", "a", "b", "c")
    app.redis().rpush("jobs", "d")
    try:
        depth = app.tasks["system.queue_metrics"].apply().get()
    finally:
        app.redis().delete(*queues)
    assert depth == 4
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    depths = {line["Queue"]: line["CeleryQueueDepth"] for line in lines if "Queue" in line}
    assert depths == {"celery": 3, "mail": 0, "webhooks": 0, "embeddings": 0, "jobs": 1, "all": 4}
    assert all(line["_aws"]["CloudWatchMetrics"] for line in lines)
    assert "queue-metrics" not in create_celery_app(settings).conf.beat_schedule


async def test_the_access_log_says_429_when_a_rate_limit_refuses(settings, caplog):
    # The limiter raises from a route's middleware; the log once said 500 for each refusal.
    limited = msgspec.structs.replace(settings, rate_limit_password_per_minute=1)
    app = create_app(limited)  # its logging setup replaces the root handlers: listen after it
    access = logging.getLogger("litebase.access")
    async with AsyncTestClient(app) as client:
        body = {"email": "someone@example.com"}
        assert (await client.post("/auth/password/forgot", json=body)).status_code != 429
        access.addHandler(caplog.handler)
        try:
            refused = await client.post("/auth/password/forgot", json=body)
        finally:
            access.removeHandler(caplog.handler)
    assert refused.status_code == 429
    logged = [r for r in caplog.records if r.name == "litebase.access"]
    assert [(entry.path, entry.status) for entry in logged] == [("/auth/password/forgot", 429)]


async def test_a_rate_limited_refusal_carries_the_request_id(settings):
    # The limiter raises from a route's middleware, so its 429 is answered past the
    # middleware that stamps the id on every other response.
    limited = msgspec.structs.replace(settings, rate_limit_password_per_minute=1)
    async with AsyncTestClient(create_app(limited)) as client:
        body = {"email": "someone@example.com"}
        assert (await client.post("/auth/password/forgot", json=body)).status_code != 429
        refused = await client.post(
            "/auth/password/forgot", json=body, headers={"x-request-id": "trace-429"}
        )
        generated = await client.post("/auth/password/forgot", json=body)
    assert refused.status_code == 429
    assert refused.headers["x-request-id"] == "trace-429"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert refused.json()["status"] == 429
    assert generated.status_code == 429 and len(generated.headers["x-request-id"]) == 32
