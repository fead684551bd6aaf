"""outbox.trim: forget change events older than the retention window (hourly, from beat)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from workers.celery_app import LitebaseCelery
from workers.database import connection

TRIM_OUTBOX_TASK = "outbox.trim"


@shared_task(name=TRIM_OUTBOX_TASK, bind=True)
def trim_outbox(self: Any) -> int:
    """Delete outbox rows past retention that the relay has handed on; remember the last id
    deleted, so a realtime client asking for older history is told it is gone."""
    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    hours = app.settings.outbox_retention_hours
    with connection(app.settings, autocommit=False) as conn:
        deleted = conn.execute(
            """
            WITH gone AS (
                DELETE FROM outbox
                WHERE created_at < now() - make_interval(hours => %s)
                  AND id <= (SELECT coalesce(max(last_id), 0) FROM outbox_relay_state
                             WHERE name = 'default')
                RETURNING id
            )
            SELECT count(*), max(id) FROM gone
            """,
            (hours,),
        ).fetchone()
        assert deleted is not None
        count, last = deleted
        if last is not None:
            conn.execute(
                """
                INSERT INTO outbox_relay_state (name, last_id, horizon) VALUES ('trimmed', %s, 0)
                ON CONFLICT (name) DO UPDATE
                SET last_id = greatest(outbox_relay_state.last_id, excluded.last_id),
                    updated_at = now()
                """,
                (last,),
            )
    return int(count)
