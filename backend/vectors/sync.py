"""Keeping chunks in step with records (run by Celery workers, on plain psycopg).

Each embedded collection has one *active* version (what search reads) and, while its settings
change, one *building* version beside it. A change to a record reaches ``embed_records`` for
every live version: the record is read as it is now (not as the event said), cut into chunks,
and only chunks whose text is new for that model are sent to the provider; the rest reuse
stored vectors. The write happens under a per-record lock and only if the record still reads
the same, so an older task finishing late never overwrites a newer one; a redelivered task
rewrites the same rows (keys are record, version, chunk number), never duplicates them.

When no record of a building version is left pending, the version gets its HNSW index and
becomes active in one transaction; the old version's chunks and index go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import psycopg

from backend.collections.spec import Collection
from backend.config import Settings
from backend.vectors.chunking import EmbedVersion, chunk, source_hash_sql, source_text, text_hash
from backend.vectors.documents import ReadFile, embed_files, record_file_failures
from backend.vectors.embedders import ProviderError, embedder_for, vector_literal
from backend.vectors.failures import record_failures
from backend.vectors.schema import chunks_table_name, stored_vectors
from backend.vectors.status import Status, file_status, status
from backend.vectors.versions import (
    LiveVersion,
    drop_version,
    ensure_versions,
    hnsw_index_sql,
    live_versions,
)

log = logging.getLogger(__name__)


def _plan(text: str, spec: EmbedVersion) -> list[tuple[str, str]]:
    return [(piece, text_hash(piece)) for piece in chunk(text, spec.chunk_size, spec.chunk_overlap)]


def embed_records(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    record_ids: Sequence[str],
    settings: Settings,
    *,
    force: bool = False,
    timings: dict[str, float] | None = None,
) -> int:
    """Bring these records' chunks up to date for one version; returns chunks embedded anew.

    ``force`` embeds every chunk again instead of reusing stored vectors of the same text and
    model (for a provider that changed its vectors under the same model name). Raises
    ProviderError when the provider fails; nothing is written for the batch then. ``timings``,
    when given, gets the seconds spent in each step added to it (``PHASES``).
    """
    clock = _Phases(timings)
    spec = live.spec
    table = collection.table.name
    chunks = chunks_table_name(table)
    fields = ", ".join(f"r.{name}" for name in spec.fields)
    rows = conn.execute(
        f"SELECT r.id::text, {fields} FROM {table} r WHERE r.id = ANY(%s::uuid[])",  # noqa: S608
        (list(record_ids),),
    ).fetchall()
    texts = {
        row[0]: source_text(dict(zip(spec.fields, row[1:], strict=True)), spec.fields)
        for row in rows
    }
    gone = sorted(set(record_ids) - texts.keys())
    if gone:  # deleted: chunks went with the row (ON DELETE CASCADE); so does its state
        conn.execute(
            "DELETE FROM embedding_records WHERE collection = %s AND record_id = ANY(%s::uuid[])",
            (collection.name, gone),
        )
    plans = {record_id: _plan(text, spec) for record_id, text in texts.items()}
    clock.lap("read")
    hashes = sorted({h for plan in plans.values() for _, h in plan})
    stored = {} if force else stored_vectors(conn, chunks, spec.model_label, hashes)
    fresh = {h: piece for plan in plans.values() for piece, h in plan if h not in stored}
    clock.lap("reuse")
    if fresh:
        embedder = embedder_for(spec.choice, settings)
        vectors = embedder.embed(list(fresh.values()))
        stored.update(zip(fresh, (vector_literal(v) for v in vectors), strict=True))
        clock.lap("embed")
    version = spec.version
    source_sql = source_hash_sql(spec.fields)
    ordered = sorted(plans)
    with conn.transaction():
        # Per-record locks (in id order, so two tasks never deadlock), then the write only for
        # records that still read as they did: a newer change has a task of its own.
        conn.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(%s || id, 0)))"
            " FROM unnest(%s::text[]) AS id",
            (f"litebase embed {collection.name} ", ordered),
        )
        current: dict[str, str] = dict(
            conn.execute(
                f"SELECT r.id::text, {source_sql} FROM {table} r"  # noqa: S608
                " WHERE r.id = ANY(%s::uuid[])",
                (ordered,),
            ).fetchall()
        )
        same = [rid for rid in ordered if current.get(rid) == text_hash(texts[rid])]
        clock.lap("lock")
        conn.execute(
            f"DELETE FROM {chunks} c USING unnest(%s::uuid[], %s::int[]) AS k(id, n)"  # noqa: S608
            " WHERE c.record_id = k.id AND c.version = %s AND c.file = '' AND c.chunk >= k.n",
            (same, [len(plans[rid]) for rid in same], version),
        )
        rows = [
            (rid, number, piece, h, stored[h])
            for rid in same
            for number, (piece, h) in enumerate(plans[rid])
        ]
        if rows:
            columns = list(zip(*rows, strict=True))
            conn.execute(
                f"INSERT INTO {chunks} AS c (record_id, version, chunk, content, content_hash,"  # noqa: S608
                " model, embedding)"
                " SELECT k.id, %s, k.n, k.content, k.hash, %s, k.embedding::vector"
                " FROM unnest(%s::uuid[], %s::int[], %s::text[], %s::text[], %s::text[])"
                " AS k(id, n, content, hash, embedding)"
                " ON CONFLICT (record_id, version, file, chunk) DO UPDATE SET"
                " content = excluded.content, content_hash = excluded.content_hash,"
                " model = excluded.model, embedding = excluded.embedding"
                " WHERE %s OR c.content_hash IS DISTINCT FROM excluded.content_hash"
                " OR c.model IS DISTINCT FROM excluded.model",
                (version, spec.model_label, *(list(column) for column in columns), force),
            )
        clock.lap("insert")
        conn.execute(
            "INSERT INTO embedding_records AS e (collection, version, record_id, status,"
            " source_hash, chunks)"
            " SELECT %s, %s, k.id, 'done', k.hash, k.n"
            " FROM unnest(%s::uuid[], %s::text[], %s::int[]) AS k(id, hash, n)"
            " ON CONFLICT (collection, version, record_id) DO UPDATE SET status = 'done',"
            " source_hash = excluded.source_hash, chunks = excluded.chunks, error = NULL,"
            " retries = 0, retry_at = NULL, updated_at = now()",
            (
                collection.name,
                version,
                same,
                [current[rid] for rid in same],
                [len(plans[rid]) for rid in same],
            ),
        )
    clock.lap("commit")
    return len(fresh)


PHASES = ("read", "reuse", "embed", "lock", "insert", "commit")
"""embed_records' steps: read the records and cut them; look up reusable vectors; embed the
new chunks; take the per-record locks and re-read; delete dropped chunks and insert the new
(the HNSW index grows here); record the state and commit."""


class _Phases:
    """Adds the time since the last lap to a phase of ``timings`` (nothing when it is None)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[phase] = self.timings.get(phase, 0.0) + now - self.last
            self.last = now


def maybe_activate(conn: psycopg.Connection, collection: Collection, settings: Settings) -> bool:
    """Swap in the building version if nothing of it is pending; True when it swapped."""
    live = live_versions(conn, collection.name)
    building = next((v for v in live if v.state == "building"), None)
    if building is None:
        return False
    # Cheap test first: every record has a state row for the version (done or failed).
    counts = conn.execute(
        f"SELECT (SELECT count(*) FROM {collection.table.name}),"  # noqa: S608
        " (SELECT count(*) FROM embedding_records WHERE collection = %s AND version = %s)",
        (collection.name, building.version),
    ).fetchone()
    assert counts is not None
    if counts[1] < counts[0]:
        return False
    now = status(conn, collection, building.spec)
    if now.pending or (now.done == 0 and counts[0] > 0):
        return False  # still going, or everything failed: keep serving the old vectors
    if building.spec.files and file_status(conn, collection, building.spec).pending:
        return False  # documents still to embed: the old version still has theirs
    spec = building.spec
    with conn.transaction():
        conn.execute(f"SET LOCAL maintenance_work_mem = '{settings.vector_index_build_memory}'")
        conn.execute(hnsw_index_sql(collection, spec, settings))
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('litebase embed ' || %s, 0))",
            (collection.name,),
        )
        still = conn.execute(
            "SELECT 1 FROM embedding_versions WHERE collection = %s AND version = %s"
            " AND state = 'building'",
            (collection.name, spec.version),
        ).fetchone()
        if still is None:
            return False
        for old in live:
            if old.state == "active":
                drop_version(conn, collection, old.version)
        conn.execute(
            "UPDATE embedding_versions SET state = 'active', activated_at = now()"
            " WHERE collection = %s AND version = %s",
            (collection.name, spec.version),
        )
    log.info("embedding version %s of %s is now active", spec.version, collection.name)
    return True


def record_ids(conn: psycopg.Connection, collection: Collection, batch: int) -> Iterator[list[str]]:
    """Every record id of the collection, in batches, in id order (keyset, not OFFSET)."""
    last = None
    while True:
        rows = conn.execute(
            f"SELECT id::text FROM {collection.table.name}"  # noqa: S608
            " WHERE %s::uuid IS NULL OR id > %s::uuid ORDER BY id LIMIT %s",
            (last, last, batch),
        ).fetchall()
        if not rows:
            return
        yield [row[0] for row in rows]
        last = rows[-1][0]


def reindex(
    conn: psycopg.Connection,
    collection: Collection,
    settings: Settings,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    read_file: ReadFile | None = None,
) -> Status:
    """Embed every record of the collection here and now (``litebase reindex``), for every
    live version; a failing batch is recorded as failed and the rest go on. ``read_file``
    reads the documents of a collection that embeds files (without it they are left as
    they are)."""
    live, _ = ensure_versions(conn, collection, settings)
    done = 0
    for ids in record_ids(conn, collection, settings.embedding_batch_records):
        for version in live:
            try:
                embed_records(conn, collection, version, ids, settings, force=force)
                if read_file is not None:
                    embed_files(conn, collection, version, ids, settings, read_file, force=force)
            except ProviderError as exc:
                record_failures(conn, collection, version, ids, str(exc), 1, settings)
                record_file_failures(conn, collection, version, ids, str(exc))
        done += len(ids)
        if progress is not None:
            progress(done)
    maybe_activate(conn, collection, settings)
    active = next(v for v in live_versions(conn, collection.name) if v.state == "active")
    return status(conn, collection, active.spec)
