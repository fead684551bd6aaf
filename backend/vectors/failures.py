"""Records that failed to embed: marking them, and the sweep's claim of those due a retry.

A record whose embedding failed for good (the task's own retries spent, or an error that will
not pass) is marked ``failed`` with a ``retry_at``; beat's sweep (``vectors.retry_failed``)
claims the due ones and sends them through the embedding task again, backing off each time.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from backend.collections.spec import Collection
from backend.config import Settings
from backend.vectors.chunking import source_hash_sql
from backend.vectors.versions import LiveVersion

# Failed records get a retry_at for the sweep: EMBEDDING_SWEEP_BACKOFF_SECONDS (%(base)s) after
# they fail, doubled for each time the sweep already sent the same text again (e.retries), at
# most %(cap)s. Failing from another text (or after a success) starts counting again.
# Computed in SQL, not by Celery: it is a row's due time, set in the statement that claims it.
RECORD_FAILURE_SQL = """
    INSERT INTO embedding_records AS e
        (collection, version, record_id, status, source_hash, error, retries, retry_at)
    VALUES (%(collection)s, %(version)s, %(record)s, 'failed', %(hash)s, %(error)s, 0,
            now() + make_interval(secs => least(%(cap)s, %(base)s)))
    ON CONFLICT (collection, version, record_id) DO UPDATE SET
        status = 'failed',
        retries = CASE WHEN e.status = 'failed' AND e.source_hash = excluded.source_hash
                  THEN e.retries ELSE 0 END,
        retry_at = now() + make_interval(secs => least(%(cap)s, %(base)s * 2 ^ (
                  CASE WHEN e.status = 'failed' AND e.source_hash = excluded.source_hash
                  THEN e.retries ELSE 0 END))),
        source_hash = excluded.source_hash,
        error = excluded.error,
        updated_at = now()
"""

# The sweep's claim: due failures, oldest first, one more retry each, and their next retry_at
# (the backoff after this retry) set at once, so a claim whose task is lost comes due again.
CLAIM_DUE_SQL = """
    WITH due AS (
        SELECT collection, version, record_id FROM embedding_records
        WHERE status = 'failed' AND retry_at <= now() AND retries < %(max)s
          AND collection = ANY(%(collections)s)
        ORDER BY retry_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE embedding_records e SET
        retries = e.retries + 1,
        retry_at = now() + make_interval(secs => least(%(cap)s, %(base)s * 2 ^ (e.retries + 1)))
    FROM due
    WHERE e.collection = due.collection AND e.version = due.version
      AND e.record_id = due.record_id
    RETURNING e.collection, e.record_id::text
"""


def record_failures(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    record_ids: Sequence[str],
    error: str,
    attempts: int,
    settings: Settings,
) -> None:
    """Mark records failed for a version and log why, once per attempt.

    Each gets a ``retry_at`` for the sweep (``retry_failed``): EMBEDDING_SWEEP_BACKOFF_SECONDS
    from now, doubled for each time the sweep already sent the same text again; a record
    whose text changed starts counting again."""
    source_sql = source_hash_sql(live.spec.fields)
    backoff = {
        "base": settings.embedding_sweep_backoff_seconds,
        "cap": settings.embedding_sweep_backoff_max_seconds,
    }
    with conn.transaction():
        present = conn.execute(
            f"SELECT r.id::text, {source_sql} FROM {collection.table.name} r"  # noqa: S608
            " WHERE r.id = ANY(%s::uuid[])",
            (list(record_ids),),
        ).fetchall()
        with conn.cursor() as cursor:
            cursor.executemany(
                RECORD_FAILURE_SQL,
                [
                    {
                        "collection": collection.name,
                        "version": live.version,
                        "record": rid,
                        "hash": h,
                        "error": error,
                        **backoff,
                    }
                    for rid, h in present
                ],
            )
            cursor.executemany(
                "INSERT INTO embedding_failures (collection, version, record_id, error, attempts)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(collection.name, live.version, rid, error, attempts) for rid, _ in present],
            )


def claim_due_failures(
    conn: psycopg.Connection, collections: Sequence[str], settings: Settings
) -> dict[str, list[str]]:
    """The failed records whose retry is due, by collection (oldest due first, at most
    EMBEDDING_SWEEP_BATCH), claimed in one statement: each counts one more retry and its
    ``retry_at`` moves on by the next backoff, so a claim whose task is lost on the way (the
    broker down) comes due again later, and two sweeps never claim one record twice."""
    rows = conn.execute(
        CLAIM_DUE_SQL,
        {
            "max": settings.embedding_sweep_max_retries,
            "collections": list(collections),
            "limit": settings.embedding_sweep_batch,
            "base": settings.embedding_sweep_backoff_seconds,
            "cap": settings.embedding_sweep_backoff_max_seconds,
        },
    ).fetchall()
    due: dict[str, dict[str, None]] = {}
    for collection, record_id in rows:  # failed in two versions: one embed task covers both
        due.setdefault(collection, {})[record_id] = None
    return {collection: list(ids) for collection, ids in due.items()}
