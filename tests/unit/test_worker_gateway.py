"""The worker's gateway: one event loop in a thread per process, results and errors handed
back to the calling task, the shipped prompts loaded, and a clean stop."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backend.config import settings_from_env
from backend.errors import TooMany
from workers.gateway import WorkerGateway, close_gateway, worker_gateway

PROMPTS = Path(__file__).parents[2] / "prompts"


@pytest.fixture
def settings():
    # Nothing connects: Redis and the providers are only reached by a model call.
    return settings_from_env(
        {}, redis_url="redis://localhost:1/0", prompts_dir=str(PROMPTS), models_file=""
    )


def test_coroutines_run_on_the_gateways_loop_and_errors_reach_the_task(settings):
    gateway = WorkerGateway(settings)
    try:

        async def where() -> str:
            return threading.current_thread().name

        async def refused() -> None:
            raise TooMany("over budget", code="budget_exceeded")

        assert gateway.call(where) == "model-gateway"
        with pytest.raises(TooMany) as raised:
            gateway.call(refused)
        assert raised.value.code == "budget_exceeded"
        assert gateway.prompts.get("summarize") is not None
        assert gateway.runner.gateway is gateway.gateway
    finally:
        gateway.close()
    assert not gateway.loop.running


def test_one_gateway_per_process_until_the_worker_stops(settings):
    first = worker_gateway(settings)
    try:
        assert worker_gateway(settings) is first
    finally:
        close_gateway()
    assert not first.loop.running
    second = worker_gateway(settings)
    try:
        assert second is not first
    finally:
        close_gateway()
