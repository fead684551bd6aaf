"""ai.rollup_usage: per-call gateway usage past AI_USAGE_RETENTION_DAYS into daily totals
(hourly, from beat), so ai_usage stays bounded while /ai/usage still counts every call."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import shared_task

from backend.ai.usage import roll_up_usage
from workers.celery_app import LitebaseCelery
from workers.database import connection

ROLLUP_USAGE_TASK = "ai.rollup_usage"


@shared_task(name=ROLLUP_USAGE_TASK, bind=True)
def rollup_usage(self: Any) -> int:
    """Idempotent: a second run finds nothing past the cutoff to move."""
    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    with connection(app.settings, autocommit=False) as conn:
        return roll_up_usage(conn, app.settings.ai_usage_retention_days, datetime.now(UTC))
