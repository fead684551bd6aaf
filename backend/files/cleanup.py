"""Removing files no record holds: through the outbox when a record lets go of them, and by
the sweeper for any that escape.

The relay's consumer (``make_cleanup_consumer``) reads every committed change of a collection
with file fields: a deleted record lets go of all its files, an update of the names it no
longer lists. It sends ``files.delete`` for them; the worker (``forget_files``) deletes their
objects and thumbnails, then their ledger rows. A crash before the task was sent is handed on
again by the relay (it keeps its position); a task lost after is the sweeper's (``sweep``,
beat): it finds ledger rows never attached past FILES_PENDING_GRACE_SECONDS (an upload whose
record write failed or never came), attached rows whose record does not hold the name, and
resumable uploads left unfinished past their expiry (their staged bytes, S3 multipart uploads).

Only the worker side (``forget_files``, ``sweep``) touches storage: both take a psycopg
connection and the storage, and are safe to run twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.events.relay import Consumer, OutboxEvent
from backend.files import DELETE_TASK
from backend.files.models import object_key, record_folder, thumb_key
from backend.files.staging import open_staging
from backend.files.storage import Storage

log = logging.getLogger(__name__)


def _names(collection: Collection, values: dict[str, Any] | None) -> list[str]:
    names: list[str] = []
    for field in collection.file_fields:
        names += [str(name) for name in (values or {}).get(field) or []]
    return names


def released_files(
    registry: CollectionRegistry, events: Sequence[OutboxEvent]
) -> list[tuple[str, str, list[str]]]:
    """(collection, record id, names) the events' records let go of: all of a deleted
    record's files, the names an update dropped."""
    released = []
    for event in events:
        collection = registry.get(event.collection)
        if collection is None or not collection.file_fields or event.op == "insert":
            continue
        kept = set() if event.op == "delete" else set(_names(collection, event.record))
        gone = [name for name in _names(collection, event.old) if name not in kept]
        if gone:
            released.append((collection.name, event.record_id, gone))
    return released


def make_cleanup_consumer(app: Any) -> Consumer:
    registry: CollectionRegistry = app.state.collections
    celery = app.state.celery

    async def release(events: Sequence[OutboxEvent]) -> None:
        for name, record_id, names in released_files(registry, events):
            await asyncio.to_thread(celery.send_task, DELETE_TASK, args=[name, record_id, names])

    return release


def _keys(collection: Collection, record_id: str, names: Sequence[str]) -> list[str]:
    """A file's object and every thumbnail its field may have made of it."""
    sizes = {size for spec in collection.file_fields.values() for size in spec.thumbs}
    keys = [object_key(collection.name, record_id, name) for name in names]
    keys += [thumb_key(collection.name, record_id, size, name) for name in names for size in sizes]
    return keys


def _held(conn: psycopg.Connection, collection: Collection, record_id: str) -> set[str] | None:
    """The names the record holds now; None when there is no such record."""
    fields = list(collection.file_fields)
    statement = sql.SQL("SELECT {fields} FROM {table} WHERE id = %s").format(
        fields=sql.SQL(", ").join(sql.Identifier(field) for field in fields),
        table=sql.Identifier(collection.table.name),
    )
    row = conn.execute(statement, (record_id,)).fetchone()
    if row is None:
        return None
    return {str(name) for names in row for name in names or []}


def forget_files(
    conn: psycopg.Connection,
    storage: Storage,
    collection: Collection,
    record_id: str,
    names: Sequence[str],
) -> int:
    """Delete the record's files ``names`` (objects, thumbnails, ledger rows) unless it holds
    them (a name is never given out twice, so one it holds is a message from before). A record
    that is gone loses its whole folder. Returns how many files were let go of."""
    held = _held(conn, collection, record_id)
    if held is None:
        storage.delete_prefix_sync(record_folder(collection.name, record_id))
        gone = list(names)
    else:
        gone = [name for name in names if name not in held]
        storage.delete_sync(_keys(collection, record_id, gone))
    # After the objects: a crash between the two leaves the rows, for the sweeper.
    conn.execute(
        "DELETE FROM stored_files WHERE collection = %s AND record_id = %s AND name = ANY(%s)"
        " AND attached",
        (collection.name, record_id, gone),
    )
    return len(gone)


def sweep(
    conn: psycopg.Connection, storage: Storage, registry: CollectionRegistry, settings: Settings
) -> int:
    """One pass of the sweeper (``conn`` in autocommit: each step is its own transaction);
    how many files it removed."""
    removed = _sweep_unattached(conn, storage, registry, settings)
    removed += sweep_expired_uploads(conn, storage, settings)
    for collection in registry:
        if collection.file_fields:
            removed += _sweep_released(conn, storage, collection, settings.files_sweep_batch)
    return removed


def _sweep_unattached(
    conn: psycopg.Connection, storage: Storage, registry: CollectionRegistry, settings: Settings
) -> int:
    """Uploads no record took within the grace. Locked while their objects go: a late write
    that would attach one waits, then finds it gone and fails (backend/files/uploads.py)."""
    with conn.transaction():
        rows = conn.execute(
            """
            SELECT id, collection, record_id::text, name FROM stored_files
            WHERE NOT attached AND created_at < now() - make_interval(secs => %s)
            ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (settings.files_pending_grace_seconds, settings.files_sweep_batch),
        ).fetchall()
        for _, name, record_id, file_name in rows:
            collection = registry.get(name)
            keys = (
                _keys(collection, record_id, [file_name])
                if collection is not None
                else [object_key(name, record_id, file_name)]
            )
            storage.delete_sync(keys)
        conn.execute("DELETE FROM stored_files WHERE id = ANY(%s)", ([row[0] for row in rows],))
    if rows:
        log.info("the sweeper removed %d uploads no record took", len(rows))
    return len(rows)


def sweep_expired_uploads(conn: psycopg.Connection, storage: Storage, settings: Settings) -> int:
    """Resumable uploads past their expiry (FILES_RESUMABLE_EXPIRY_SECONDS) that no request
    holds: their staged bytes go (an S3 multipart upload is aborted), then their rows."""
    staging = open_staging(settings, storage)
    with conn.transaction():
        rows = conn.execute(
            """
            SELECT id::text, collection, record_id::text, name, s3_upload_id FROM file_uploads
            WHERE expires_at < now() AND (lease_until IS NULL OR lease_until < now())
            ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (settings.files_sweep_batch,),
        ).fetchall()
        for upload_id, collection, record_id, name, s3_upload_id in rows:
            staging.discard_sync(upload_id, object_key(collection, record_id, name), s3_upload_id)
        conn.execute("DELETE FROM file_uploads WHERE id = ANY(%s::uuid[])", ([r[0] for r in rows],))
    if rows:
        log.info("the sweeper removed %d expired resumable uploads", len(rows))
    return len(rows)


def _sweep_released(
    conn: psycopg.Connection, storage: Storage, collection: Collection, batch: int
) -> int:
    """Attached files whose record is gone or no longer lists them (a lost files.delete)."""
    held = sql.SQL(" OR ").join(
        sql.SQL("f.name = ANY(t.{})").format(sql.Identifier(field))
        for field in collection.file_fields
    )
    statement = sql.SQL(
        """
        SELECT f.id, f.record_id::text, f.name, t.id IS NULL AS record_gone
        FROM stored_files f LEFT JOIN {table} t ON t.id = f.record_id
        WHERE f.collection = %s AND f.attached AND NOT coalesce({held}, false)
        ORDER BY f.created_at LIMIT %s FOR UPDATE OF f SKIP LOCKED
        """
    ).format(table=sql.Identifier(collection.table.name), held=held)
    with conn.transaction():
        rows = conn.execute(statement, (collection.name, batch)).fetchall()
        for _, record_id, name, record_gone in rows:
            if record_gone:
                storage.delete_prefix_sync(record_folder(collection.name, record_id))
            else:
                storage.delete_sync(_keys(collection, record_id, [name]))
        conn.execute("DELETE FROM stored_files WHERE id = ANY(%s)", ([row[0] for row in rows],))
    if rows:
        log.info("the sweeper removed %d files %s let go of", len(rows), collection.name)
    return len(rows)
