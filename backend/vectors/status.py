"""How far a collection's embedding has come: records pending, failed and done per version.

A record is pending when no state row exists for it or the hash of its current fields differs
from the one embedded, computed in SQL (docs/decisions/0003-embedding-versions.md), so even a
change made with plain SQL shows. Workers read it on psycopg (``status``), the API and its
gauges on asyncpg (``embedding_status``).

Documents (``Embed(files=[...])``) have a status of their own, per file: every document a
record holds now (its ledger row in ``stored_files`` of a document type, its name in one of
the embedded file fields) is pending until ``embedding_files`` has a row for it in the
version: done, or failed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from backend.collections.reads import Reader
from backend.collections.spec import Collection
from backend.config import Settings
from backend.db.outbox import _checked_identifier
from backend.vectors.chunking import EmbedVersion, source_hash_sql
from backend.vectors.extract import DOCUMENT_TYPES
from backend.vectors.schema import checked_version
from backend.vectors.versions import ActiveVersions, desired_version


@dataclass(frozen=True)
class Status:
    pending: int
    failed: int
    done: int


def status_sql(collection: Collection, spec: EmbedVersion) -> str:
    """One statement, no parameters (the names and version are checked): pending, failed, done."""
    current = source_hash_sql(spec.fields)
    # No input reaches this text: checked identifiers and a checked version.
    return (
        "SELECT"  # noqa: S608
        f" count(*) FILTER (WHERE e.record_id IS NULL OR e.source_hash <> {current}),"
        f" count(*) FILTER (WHERE e.status = 'failed' AND e.source_hash = {current}),"
        f" count(*) FILTER (WHERE e.status = 'done' AND e.source_hash = {current})"
        f" FROM {collection.table.name} r LEFT JOIN embedding_records e"
        f" ON e.collection = '{collection.name}' AND e.version = '{checked_version(spec.version)}'"
        " AND e.record_id = r.id"
    )


def file_status_sql(collection: Collection, spec: EmbedVersion) -> str:
    """One statement, no parameters: the documents pending, failed and done in a version."""
    held = " OR ".join(f"f.name = ANY(r.{_checked_identifier(field)})" for field in spec.files)
    types = ", ".join(f"'{t}'" for t in DOCUMENT_TYPES)  # constants
    return (
        "SELECT"  # noqa: S608 - checked identifiers, a checked version, constants
        " count(*) FILTER (WHERE e.name IS NULL),"
        " count(*) FILTER (WHERE e.status = 'failed'),"
        " count(*) FILTER (WHERE e.status = 'done')"
        f" FROM stored_files f JOIN {collection.table.name} r ON r.id = f.record_id"
        f" AND ({held or 'false'})"
        f" LEFT JOIN embedding_files e ON e.collection = '{collection.name}'"
        f" AND e.version = '{checked_version(spec.version)}'"
        " AND e.record_id = f.record_id AND e.name = f.name"
        f" WHERE f.collection = '{collection.name}' AND f.content_type IN ({types})"
    )


def record_files_sql(collection: Collection, spec: EmbedVersion) -> str:
    """The documents record ``$1`` holds, with their state: name, status, reason, chunks,
    pages, updated_at (pending: no state yet)."""
    held = " OR ".join(f"f.name = ANY(r.{_checked_identifier(field)})" for field in spec.files)
    types = ", ".join(f"'{t}'" for t in DOCUMENT_TYPES)  # constants
    return (
        "SELECT f.name, coalesce(e.status, 'pending'), e.error, e.chunks, e.pages,"  # noqa: S608
        " e.updated_at"
        f" FROM stored_files f JOIN {collection.table.name} r ON r.id = f.record_id"
        f" AND ({held or 'false'})"
        f" LEFT JOIN embedding_files e ON e.collection = '{collection.name}'"
        f" AND e.version = '{checked_version(spec.version)}'"
        " AND e.record_id = f.record_id AND e.name = f.name"
        f" WHERE f.collection = '{collection.name}' AND f.record_id = $1"
        f" AND f.content_type IN ({types}) ORDER BY f.name"
    )


def failed_files_sql(collection: Collection, spec: EmbedVersion) -> str:
    """The version's failed documents, newest first, at most ``$1``: record, name, reason."""
    return (
        "SELECT record_id::text, name, coalesce(error, ''), updated_at"  # noqa: S608 - checked
        " FROM embedding_files"
        f" WHERE collection = '{collection.name}'"
        f" AND version = '{checked_version(spec.version)}' AND status = 'failed'"
        " ORDER BY updated_at DESC, record_id, name LIMIT $1"
    )


def file_status(conn: psycopg.Connection, collection: Collection, spec: EmbedVersion) -> Status:
    row = conn.execute(file_status_sql(collection, spec)).fetchone()
    assert row is not None
    return Status(pending=row[0], failed=row[1], done=row[2])


def status(conn: psycopg.Connection, collection: Collection, spec: EmbedVersion) -> Status:
    row = conn.execute(status_sql(collection, spec)).fetchone()
    assert row is not None
    return Status(pending=row[0], failed=row[1], done=row[2])


async def embedding_status(
    reader: Reader,
    versions: ActiveVersions,
    settings: Settings,
    collection: Collection,
    record: UUID | None = None,
) -> dict[str, Any]:
    """Counts for the active version (or the one the settings name, before any exists) and,
    while a new one is building, for that one too; with ``record``, that record's documents
    one by one."""
    active = await versions.get(collection.name)
    spec = active or desired_version(collection, settings)
    building = await versions.building(collection.name)
    report: dict[str, Any] = {
        "version": spec.version,
        "model": spec.model_label,
        **await _counts(reader, collection, spec),
    }
    if spec.files:
        report["files"] = await _file_counts(reader, collection, spec, settings)
        if record is not None:
            report["files"]["record"] = await _record_files(reader, collection, spec, record)
    report["building"] = (
        None
        if building is None
        else {
            "version": building.version,
            "model": building.model_label,
            **await _counts(reader, collection, building),
        }
    )
    return report


async def _counts(reader: Reader, collection: Collection, spec: EmbedVersion) -> dict[str, int]:
    async with reader.pool.acquire() as connection:
        row = await connection.fetchrow(status_sql(collection, spec))
    assert row is not None
    return {"pending": row[0], "failed": row[1], "done": row[2]}


async def _record_files(
    reader: Reader, collection: Collection, spec: EmbedVersion, record: UUID
) -> list[dict[str, Any]]:
    async with reader.pool.acquire() as connection:
        rows = await connection.fetch(record_files_sql(collection, spec), record)
    return [
        {
            "file": r[0],
            "status": r[1],
            "reason": r[2],
            "chunks": r[3],
            "pages": r[4],
            "updated_at": r[5],
        }
        for r in rows
    ]


async def _file_counts(
    reader: Reader, collection: Collection, spec: EmbedVersion, settings: Settings
) -> dict[str, Any]:
    async with reader.pool.acquire() as connection:
        row = await connection.fetchrow(file_status_sql(collection, spec))
        failures = await connection.fetch(
            failed_files_sql(collection, spec), settings.embedding_status_max_failed_files
        )
    assert row is not None
    return {
        "pending": row[0],
        "failed": row[1],
        "done": row[2],
        "failures": [
            {"record_id": r[0], "file": r[1], "reason": r[2], "failed_at": r[3]} for r in failures
        ],
    }
