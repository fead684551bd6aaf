"""webhooks.deliver, .requeue and .trim: send signed deliveries, retrying for a bounded time.

The relay records one delivery per (endpoint, event) and sends ``webhooks.deliver`` with its
id. Each run makes one attempt (backend/webhooks/delivery.py) and, if it may pass (5xx, 429,
timeouts, connection errors), retries the task after an exponential, jittered wait until
WEBHOOK_RETRY_WINDOW_SECONDS is spent; then the delivery is failed, replayable by hand.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from backend.webhooks import DELIVER_TASK, REQUEUE_TASK, TRIM_TASK
from backend.webhooks.delivery import deliver as deliver_once
from backend.webhooks.delivery import overdue_deliveries, trim_deliveries
from backend.webhooks.service import target_policy
from workers.celery_app import LitebaseCelery
from workers.database import connection


def _app(task: Any) -> LitebaseCelery:
    app = task.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    return app


# Retries are bounded by time (the window), not by a count: max_retries=None.
@shared_task(name=DELIVER_TASK, bind=True, max_retries=None)
def deliver(self: Any, delivery_id: str) -> None:
    app = _app(self)
    settings = app.settings
    assert settings.database_url is not None
    with connection(settings) as conn:
        wait = deliver_once(conn, delivery_id, settings, target_policy(settings))
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(name=REQUEUE_TASK, bind=True)
def requeue(self: Any) -> int:
    """Send again deliveries whose task was lost (beat, every minute); returns how many."""
    app = _app(self)
    settings = app.settings
    assert settings.database_url is not None
    with connection(settings) as conn:
        overdue = overdue_deliveries(conn, settings.webhook_requeue_after_seconds)
    for delivery_id in overdue:
        app.send_task(DELIVER_TASK, args=[delivery_id])
    return len(overdue)


@shared_task(name=TRIM_TASK, bind=True)
def trim(self: Any) -> int:
    """Forget finished deliveries past WEBHOOK_DELIVERY_RETENTION_DAYS (beat, hourly)."""
    app = _app(self)
    settings = app.settings
    assert settings.database_url is not None
    with connection(settings) as conn:
        return trim_deliveries(conn, settings.webhook_delivery_retention_days)
