"""Issue 18.8: each kind of work on its own queue, and `litebase worker` consuming them all in
two pools (user jobs apart)."""

from __future__ import annotations

import importlib

from backend.config import settings_from_env
from workers.celery_app import (
    JOBS_QUEUE,
    QUEUES,
    SYSTEM_QUEUES,
    TASK_MODULES,
    TASK_QUEUES,
    create_celery_app,
)
from workers.pools import pool_commands


def _app():
    app = create_celery_app(settings_from_env({}, redis_url="redis://localhost:1/0"))
    for module in TASK_MODULES:
        importlib.import_module(module)
    return app


def test_every_routed_task_exists_and_goes_to_a_queue_a_pool_consumes():
    app = _app()
    assert set(TASK_QUEUES) <= set(app.tasks)
    assert set(TASK_QUEUES.values()) <= set(QUEUES)
    route = app.amqp.router.route
    assert route({}, "mail.send")["queue"].name == "mail"
    assert route({}, "jobs.run")["queue"].name == JOBS_QUEUE
    assert route({}, "outbox.trim")["queue"].name == "celery"  # upkeep: the default queue


def test_the_two_pools_cover_every_queue_once_with_their_own_sizes():
    system, jobs = pool_commands(3, 5, "prefork", ["--include", "extra.tasks"])
    consumed = []
    for command, size, node in ((system, "3", "system@%h"), (jobs, "5", "jobs@%h")):
        assert command[command.index("--concurrency") + 1] == size
        assert command[command.index("--hostname") + 1] == node
        assert command[-2:] == ["--include", "extra.tasks"]
        consumed += command[command.index("--queues") + 1].split(",")
    assert sorted(consumed) == sorted(QUEUES)
    assert jobs[jobs.index("--queues") + 1] == JOBS_QUEUE
    assert JOBS_QUEUE not in SYSTEM_QUEUES
