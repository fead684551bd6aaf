"""The Celery app, built from the same settings as the API (broker and results on Redis)."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from celery.utils.log import get_task_logger

from backend.config import Settings, SettingsError, get_settings
from backend.lib.urls import celery_redis_url

log = get_task_logger(__name__)

TASK_MODULES = [
    "workers.tasks.system",
    "workers.tasks.mail",
    "workers.tasks.outbox",
    "workers.tasks.jobs",
    "workers.tasks.vectors",
    "workers.tasks.webhooks",
    "workers.tasks.ai",
    "workers.tasks.auth",
    "workers.tasks.files",
]


# Each kind of work has its own queue, so one kind cannot hold up another: ten long user jobs
# must not delay a sign-in code (issue 18.8). Unrouted tasks (the periodic upkeep) use the
# default queue. `litebase worker` without --queues runs two pools: JOBS_QUEUE on its own, and
# SYSTEM_QUEUES together (mail, webhooks and embeddings are short).
DEFAULT_QUEUE = "celery"
JOBS_QUEUE = "jobs"
TASK_QUEUES = {
    "mail.send": "mail",
    "webhooks.deliver": "webhooks",
    "vectors.embed": "embeddings",
    "vectors.reindex": "embeddings",
    "vectors.retry_failed": "embeddings",
    "jobs.run": JOBS_QUEUE,
}
SYSTEM_QUEUES = (DEFAULT_QUEUE, "mail", "webhooks", "embeddings")
QUEUES = (*SYSTEM_QUEUES, JOBS_QUEUE)


class LitebaseCelery(Celery):
    """A Celery app that carries the Litebase settings it was built from."""

    settings: Settings
    _redis: redis.Redis | None = None

    def redis(self) -> redis.Redis:
        if self._redis is None:
            assert self.settings.redis_url is not None
            self._redis = redis.Redis.from_url(self.settings.redis_url)
        return self._redis


class LitebaseTask(Task[Any, Any]):
    """Base task: refuses to run a message delivered more often than CELERY_MAX_DELIVERIES.

    With ``acks_late`` and ``task_reject_on_worker_lost`` a task that kills its worker (out of
    memory, a segfault) is redelivered; without a bound it would kill workers forever.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        app = self.app
        if isinstance(app, LitebaseCelery) and self.request.id and not self.request.is_eager:
            deliveries = record_delivery(app, self.request.id, self.request.retries or 0)
            limit = app.settings.celery_max_deliveries
            if deliveries > limit:
                log.error(
                    "task %s[%s] was delivered %d times (limit %d); dropping it",
                    self.name,
                    self.request.id,
                    deliveries,
                    limit,
                )
                self.delivery_limit_reached(deliveries - 1, *args, **kwargs)
                raise Reject(f"delivered {deliveries} times, limit {limit}", requeue=False)
        return super().__call__(*args, **kwargs)

    def delivery_limit_reached(self, deliveries: int, *args: Any, **kwargs: Any) -> None:
        """Called once the task is dropped for good: record it where its caller looks."""


def record_delivery(app: LitebaseCelery, task_id: str, retries: int) -> int:
    """Count one more delivery of this attempt of the task; returns the count so far."""
    key = f"litebase:celery:deliveries:{task_id}:{retries}"
    ttl = app.settings.celery_visibility_timeout_seconds * (app.settings.celery_max_deliveries + 1)
    pipe = app.redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, ttl)
    count, _ = pipe.execute()
    return int(count)


def restore_sweep(visibility_timeout: int) -> dict[str, int]:
    """How often each worker hands abandoned messages (a killed worker's, unacknowledged past
    the visibility timeout) out again: kombu sweeps every interval * throttle seconds, 100 by
    default. A tenth of the timeout, between 1 and 100 s, keeps recovery prompt when the
    timeout is short and leaves the default alone when it is long."""
    every = min(100, max(1, visibility_timeout // 10))
    interval = min(10, every)
    return {"unacked_restore_interval": interval, "unacked_restore_throttle": every // interval}


def create_celery_app(settings: Settings | None = None) -> LitebaseCelery:
    settings = settings or get_settings()
    if not settings.redis_url and not settings.celery_broker_url:
        raise SettingsError("REDIS_URL (or CELERY_BROKER_URL) is not set")
    redis_url = celery_redis_url(settings.redis_url) if settings.redis_url else None
    app = LitebaseCelery("litebase", task_cls=LitebaseTask, set_as_current=True)
    app.settings = settings
    timeout = settings.celery_visibility_timeout_seconds
    transport_options = {"visibility_timeout": timeout}
    app.conf.update(
        broker_url=settings.celery_broker_url or redis_url,
        result_backend=settings.celery_result_backend or redis_url,
        broker_transport_options={**transport_options, **restore_sweep(timeout)},
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # Results live in Litebase's own tables (jobs, deliveries, embedding status); the
        # result backend keeps only what asks for it (system.ping, a round-trip probe).
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
        imports=(*TASK_MODULES, *settings.app_modules),  # yours: job types and tasks
        task_default_queue=DEFAULT_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        beat_schedule=beat_schedule(settings),
    )
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every periodic task, declared here and nowhere else (no ``add_periodic_task`` in task
    modules): ``litebase beat`` runs exactly these. Users' own schedules are rows in
    ``job_schedules``, started by the ``jobs.fire_schedules`` entry below (docs/jobs.md)."""
    return {
        "trim-outbox": {"task": "outbox.trim", "schedule": 3600.0},
        "requeue-jobs": {
            "task": "jobs.requeue",
            "schedule": float(settings.jobs_requeue_interval_seconds),
            "args": (settings.jobs_requeue_after_seconds,),
        },
        "fire-schedules": {
            "task": "jobs.fire_schedules",
            "schedule": float(settings.jobs_schedule_poll_seconds),
        },
        "requeue-webhooks": {"task": "webhooks.requeue", "schedule": 60.0},
        "trim-webhook-deliveries": {"task": "webhooks.trim", "schedule": 3600.0},
        "rollup-ai-usage": {"task": "ai.rollup_usage", "schedule": 3600.0},
        "delete-idle-anonymous-users": {"task": "auth.delete_idle_anonymous", "schedule": 3600.0},
        "sweep-files": {
            "task": "files.sweep",
            "schedule": float(settings.files_sweep_interval_seconds),
        },
        **(
            {
                "retry-failed-embeddings": {
                    "task": "vectors.retry_failed",
                    "schedule": float(settings.embedding_sweep_interval_seconds),
                }
            }
            if settings.embedding_sweep_max_retries
            else {}
        ),
        **(
            {"queue-metrics": {"task": "system.queue_metrics", "schedule": 60.0}}
            if settings.queue_metrics_namespace
            else {}
        ),
    }
