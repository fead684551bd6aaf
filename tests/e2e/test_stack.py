"""The API under uvicorn and a real Celery worker, spoken to over HTTP and the broker."""

from __future__ import annotations

import time

import httpx
import redis

from backend.config import settings_from_env
from tests.e2e.conftest import run_python
from workers.celery_app import QUEUES, create_celery_app


def _celery(stack):
    return create_celery_app(
        settings_from_env(
            {}, env="test", database_url=stack.database_url, redis_url=stack.redis_url
        )
    )


def test_ready_over_real_http(stack):
    response = httpx.get(f"{stack.base_url}/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"postgres": "ok", "redis": "ok", "migrations": "ok"}


def test_a_task_round_trips_through_a_real_worker(stack):
    result = _celery(stack).send_task("system.ping", args=["hello"])
    reply = result.get(timeout=30)
    assert reply["payload"] == "hello"
    assert reply["worker"].startswith("system@")  # the pool of everything but users' jobs


async def test_a_streamed_body_over_the_limit_is_413(stack):
    async def chunks():  # no content-length: the limit holds while streaming
        for _ in range(64):
            yield b"x" * 128

    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        fits = await client.post("/test/echo", json={"text": "hi"})
        streamed = await client.post(
            "/test/echo", content=chunks(), headers={"content-type": "application/json"}
        )
        announced = await client.post("/test/echo", json={"text": "x" * 5000})
    assert fits.status_code == 201
    assert streamed.status_code == 413
    assert announced.status_code == 413
    assert streamed.headers["content-type"].startswith("application/problem+json")


def test_a_task_that_kills_its_worker_is_redelivered_a_bounded_number_of_times(stack):
    app = _celery(stack)
    result = app.send_task("tests.kill_worker_process")
    counter = redis.Redis.from_url(stack.redis_url)
    key = f"litebase:celery:deliveries:{result.id}:0"
    limit = int(stack.env["CELERY_MAX_DELIVERIES"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and int(counter.get(key) or 0) <= limit:
        time.sleep(0.2)
    assert int(counter.get(key) or 0) == limit + 1  # the last delivery was refused, not run

    def in_the_broker() -> bool:
        """Whether the message waits in a queue or is held unacknowledged (kombu's Redis
        transport keeps those in the ``unacked`` hash, to hand out again)."""
        held = counter.hvals("unacked") + [m for q in QUEUES for m in counter.lrange(q, 0, -1)]
        return any(result.id.encode() in message for message in held)

    # Rejected for good: nowhere it could be delivered again from.
    deadline = time.monotonic() + 30
    while in_the_broker():
        assert time.monotonic() < deadline, "the refused message is still in the broker"
        time.sleep(0.1)
    assert int(counter.get(key) or 0) == limit + 1  # and it was not delivered again meanwhile
    # The worker survived all of it and still serves.
    assert (
        app.send_task("system.ping", args=["still here"]).get(timeout=30)["payload"] == "still here"
    )


def test_the_api_process_refuses_to_start_in_prod_with_a_placeholder_secret(stack):
    env = {**stack.env, "LITEBASE_ENV": "prod", "SECRET_KEY": "change-me"}
    result = run_python("uvicorn", "backend.app:create_app", "--factory", "--port", "0", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is missing or a placeholder" in result.stderr
