"""Finding jobs whose Celery message is gone, from their rows (beat's jobs.requeue).

A message can vanish where the row cannot: Redis restarted without its data, the broker was
down at submit, or a worker died in the instant between Redis handing it a message (BRPOP
removes it from the queue) and the worker recording it as unacknowledged. A job is taken for
lost when its row has not moved for longer than any live job's would: JOBS_REQUEUE_AFTER_SECONDS
plus, for a retry, the longest backoff, and for a running job, its type's timeout (it reports
progress as it goes and is stopped at its timeout).
"""

from __future__ import annotations

from collections.abc import Collection

import psycopg
from celery.utils.time import get_exponential_backoff_interval

from backend.jobs.types import JOB_TYPES

RETRY_BACKOFF_MAX_SECONDS = 60


def retry_backoff(attempts: int) -> int:
    """Seconds before a failed job's next attempt: 2, 4, 8 … at most a minute."""
    return get_exponential_backoff_interval(1, attempts, RETRY_BACKOFF_MAX_SECONDS)


def _grace(type_name: str, status: str, attempts: int) -> float:
    if status == "running":
        job_type = JOB_TYPES.get(type_name)
        return float(job_type.timeout_seconds if job_type else 0)
    return float(RETRY_BACKOFF_MAX_SECONDS if attempts else 0)


def claim_lost_jobs(
    conn: psycopg.Connection, after_seconds: float, waiting_types: Collection[str] = ()
) -> list[tuple[str, str]]:
    """The (id, type) of every job taken for lost, each marked as sent again (its updated_at
    moves), so the next sweep waits as long again before it resends the same job.

    ``waiting_types`` are types whose queue still holds messages: while workers are behind, a
    job that has waited long is most likely still in line, and sending it again would only
    lengthen the line; it is resent once its queue has drained."""
    rows = conn.execute(
        "SELECT id::text, type, status, attempts,"
        " extract(epoch FROM now() - greatest(updated_at, run_at))::float8"
        " FROM jobs WHERE status IN ('queued', 'running')"
        " AND greatest(updated_at, run_at) < now() - make_interval(secs => %s)",
        (after_seconds,),
    ).fetchall()
    lost = [
        job_id
        for job_id, type_name, status, attempts, idle in rows
        if type_name not in waiting_types
        and idle > after_seconds + _grace(type_name, status, attempts)
    ]
    if not lost:
        return []
    # Only rows that still look the same: one that moved since is alive after all.
    claimed = conn.execute(
        "UPDATE jobs SET updated_at = now() WHERE id = ANY(%s::uuid[])"
        " AND status IN ('queued', 'running')"
        " AND greatest(updated_at, run_at) < now() - make_interval(secs => %s)"
        " RETURNING id::text, type",
        (lost, after_seconds),
    ).fetchall()
    return [(job_id, type_name) for job_id, type_name in claimed]
