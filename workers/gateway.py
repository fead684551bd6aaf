"""The model gateway inside a worker process: the API's ``Gateway``, on an event loop of its own.

Celery tasks are synchronous; the gateway is async (redis.asyncio, AsyncOpenAI). Each worker
process starts one event loop in a daemon thread the first time a task needs the gateway and
builds one ``Gateway`` on it from the same settings and models.yaml as the API, so budgets
(the same Redis ledgers and override hash), fallbacks and usage events (pushed to the same
Redis buffer, which the API's usage writer drains into ``ai_usage``) are the API's own, and
connections to Redis and the providers are kept between tasks. Tasks hand it coroutines with
``call``; any number of pool threads may do so at once.

Built lazily, once per process, and closed when the process shuts down (workers/per_process.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from backend.ai.catalog import load_catalog
from backend.ai.gateway import Gateway
from backend.ai.prompts import PromptLibrary, load_library
from backend.ai.runner import PromptRunner
from backend.config import Settings
from backend.lib.clock import SystemClock
from backend.lib.loop_thread import LoopThread
from workers.per_process import PerProcess

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerGateway:
    """One event loop in a thread, and the gateway and prompts the worker's tasks use."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.prompts: PromptLibrary = load_library(Path(settings.prompts_dir))
        catalog = load_catalog(settings)
        self.loop = LoopThread("model-gateway")

        async def build() -> tuple[Redis, Gateway]:
            redis = Redis.from_url(settings.redis_url or "")
            return redis, Gateway(catalog, settings, redis, SystemClock())

        self._redis, self.gateway = self.call(build)
        self.runner = PromptRunner(self.gateway, self.prompts)

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the gateway's loop and wait for its result.

        If the task is stopped while it waits (its soft time limit), the coroutine is cancelled,
        so the gateway settles the call (usage recorded as ``cancelled``) and closes its stream.
        """
        return self.loop.call(make)

    def close(self) -> None:
        async def shut() -> None:
            await self.gateway.close()
            await self._redis.aclose()

        try:
            self.loop.call(shut, timeout=10)
        except Exception:
            log.warning("closing the worker's gateway failed", exc_info=True)
        self.loop.close()


def _close(found: WorkerGateway, same_process: bool) -> None:
    if same_process:  # an inherited one's loop thread did not survive the fork
        found.close()


_gateways: PerProcess[WorkerGateway] = PerProcess(_close)


def worker_gateway(settings: Settings) -> WorkerGateway:
    """This process's gateway, built on first use."""
    return _gateways.get(None, lambda: WorkerGateway(settings))


def close_gateway(**_: object) -> None:
    """Close this process's gateway now (the worker's shutdown signals do it too)."""
    _gateways.shutdown()
