"""Embedding versions: which are live for a collection, starting one, and dropping one.

Everything that decides the vectors (provider, model, size, fields, chunking) hashes to a
version (docs/decisions/0003-embedding-versions.md). A collection has at most one *active*
version (what search reads) and one *building* beside it while its settings change. Workers
manage them here on plain psycopg; ``ActiveVersions`` is the API's cached view of the active
one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from backend.collections.reads import Reader
from backend.collections.spec import Collection
from backend.config import Settings
from backend.vectors.chunking import EmbedVersion
from backend.vectors.embedders import ModelChoice
from backend.vectors.schema import (
    checked_version,
    chunks_table_name,
    create_hnsw_index_sql,
    drop_hnsw_index_sql,
)


@dataclass(frozen=True)
class LiveVersion:
    spec: EmbedVersion
    state: str  # active | building

    @property
    def version(self) -> str:
        return self.spec.version


def desired_version(collection: Collection, settings: Settings) -> EmbedVersion:
    assert collection.embed is not None
    return EmbedVersion.of(
        ModelChoice.from_settings(settings),
        collection.embed.fields,
        collection.embed.chunk_size,
        collection.embed.chunk_overlap,
        collection.embed.files,
    )


VERSION_COLUMNS = "provider, model, dimensions, fields, chunk_size, chunk_overlap, files"


def version_from_row(row: Sequence[Any]) -> EmbedVersion:
    """An EmbedVersion from a row of VERSION_COLUMNS, in that order."""
    provider, model, dimensions, fields, size, overlap, files = row
    return EmbedVersion(
        provider, model, dimensions, tuple(fields), size, overlap, tuple(files or ())
    )


def live_versions(conn: psycopg.Connection, collection: str) -> list[LiveVersion]:
    rows = conn.execute(
        f"SELECT state, {VERSION_COLUMNS} FROM embedding_versions"  # noqa: S608
        " WHERE collection = %s ORDER BY state",
        (collection,),
    ).fetchall()
    return [LiveVersion(version_from_row(row[1:]), row[0]) for row in rows]


def _insert_version(
    conn: psycopg.Connection, collection: str, spec: EmbedVersion, state: str
) -> None:
    conn.execute(
        f"INSERT INTO embedding_versions (collection, version, state, {VERSION_COLUMNS},"  # noqa: S608
        " activated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " CASE WHEN %s = 'active' THEN now() END)",
        (
            collection,
            spec.version,
            state,
            spec.provider,
            spec.model,
            spec.dimensions,
            list(spec.fields),
            spec.chunk_size,
            spec.chunk_overlap,
            list(spec.files),
            state,
        ),
    )


def drop_version(conn: psycopg.Connection, collection: Collection, version: str) -> None:
    """Forget a version: its row, its chunks, its index, its per-record state."""
    version = checked_version(version)
    conn.execute(
        "DELETE FROM embedding_versions WHERE collection = %s AND version = %s",
        (collection.name, version),
    )
    conn.execute(
        f"DELETE FROM {chunks_table_name(collection.table.name)} WHERE version = %s",  # noqa: S608
        (version,),
    )
    conn.execute(drop_hnsw_index_sql(collection.table.name, version))
    conn.execute(
        "DELETE FROM embedding_records WHERE collection = %s AND version = %s",
        (collection.name, version),
    )
    conn.execute(
        "DELETE FROM embedding_files WHERE collection = %s AND version = %s",
        (collection.name, version),
    )


def ensure_versions(
    conn: psycopg.Connection,
    collection: Collection,
    settings: Settings,
    *,
    adopt: bool = True,
) -> tuple[list[LiveVersion], bool]:
    """Make the settings' version live; returns the live versions and whether a rebuild began.

    The first version of a collection is active at once (its index is built empty and grows).
    With ``adopt`` (a worker starting, ``litebase reindex``), settings that name another
    version start building it beside the active one, and settings that name the active one
    again drop an unfinished build. Without it (every embedding task) only a first version is
    made: during a rolling deploy, workers still on the old settings keep embedding every live
    version and never undo the new one.
    """
    desired = desired_version(collection, settings)
    started = False
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('litebase embed ' || %s, 0))",
            (collection.name,),
        )
        live = live_versions(conn, collection.name)
        active = next((v for v in live if v.state == "active"), None)
        building = next((v for v in live if v.state == "building"), None)
        if active is not None and not adopt:
            return live, False
        if active is None:
            _insert_version(conn, collection.name, desired, "active")
            conn.execute(hnsw_index_sql(collection, desired, settings))
        elif active.version == desired.version:
            if building is not None:  # the settings went back before the rebuild finished
                drop_version(conn, collection, building.version)
        elif building is None or building.version != desired.version:
            if building is not None:
                drop_version(conn, collection, building.version)
            _insert_version(conn, collection.name, desired, "building")
            started = True
    return live_versions(conn, collection.name), started


def hnsw_index_sql(collection: Collection, spec: EmbedVersion, settings: Settings) -> str:
    """The statement that builds a version's HNSW index with the settings' build parameters."""
    return create_hnsw_index_sql(
        collection.table.name,
        spec.version,
        spec.dimensions,
        m=settings.vector_hnsw_m,
        ef_construction=settings.vector_hnsw_ef_construction,
    )


class ActiveVersions:
    """Which version each collection serves, read from the database and kept ``ttl`` seconds
    (VECTOR_VERSION_CACHE_SECONDS)."""

    def __init__(self, reader: Reader, ttl: float = 2.0) -> None:
        self.reader = reader
        self.ttl = ttl
        self._cached: dict[str, tuple[float, EmbedVersion | None]] = {}

    def is_cached(self, collection: str) -> bool:
        hit = self._cached.get(collection)
        return hit is not None and time.monotonic() - hit[0] < self.ttl

    async def get(self, collection: str, *, fresh: bool = False) -> EmbedVersion | None:
        if not fresh and self.is_cached(collection):
            return self._cached[collection][1]
        spec = await self._read(collection, "active")
        if spec is not None:  # a first version is seen as soon as it exists
            self._cached[collection] = (time.monotonic(), spec)
        return spec

    async def building(self, collection: str) -> EmbedVersion | None:
        return await self._read(collection, "building")

    async def _read(self, collection: str, state: str) -> EmbedVersion | None:
        async with self.reader.pool.acquire() as connection:
            row = await connection.fetchrow(
                f"SELECT {VERSION_COLUMNS} FROM embedding_versions"  # noqa: S608 - constant
                " WHERE collection = $1 AND state = $2",
                collection,
                state,
            )
        return None if row is None else version_from_row(tuple(row))
