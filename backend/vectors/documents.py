"""Keeping the chunks of a record's documents in step with its file fields (workers, psycopg).

A collection whose ``Embed(files=[...])`` names file fields has the text of each document those
fields hold (PDF, HTML, Markdown, plain text: backend/vectors/extract.py) chunked and embedded
beside its text fields, in the same chunks table (``file`` = the stored name, ``page`` = the
PDF page). It runs in the same task as the record's fields (``vectors.embed``, sent by the relay
for every committed change of the record), so a file added, replaced or removed, or the record
deleted, reaches it the same way.

A stored name's bytes never change (every upload gets a new name), so a file is embedded once
per version: ``embedding_files`` keeps its state (done, or failed with the reason); no row is
pending. A file that yields no text (a scanned PDF, a corrupt one) is failed for good with the
reason; one that failed on the provider is tried again with its record. Writes happen under the
record's lock (the one ``embed_records`` takes) and only for names the record still holds, so a
task that finishes late never brings back a file the record let go of.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import psycopg
from psycopg import sql

from backend.collections.spec import Collection
from backend.config import Settings
from backend.vectors.chunking import EmbedVersion, chunk, text_hash
from backend.vectors.embedders import embedder_for, vector_literal
from backend.vectors.extract import (
    DOCUMENT_TYPES,
    Extracted,
    Limits,
    NotExtractable,
    document_kind,
    extract,
)
from backend.vectors.schema import chunks_table_name, stored_vectors
from backend.vectors.versions import LiveVersion

log = logging.getLogger(__name__)

ReadFile = Callable[[str, str, str], Iterable[bytes]]
"""(collection, record id, name) → the file's bytes as they stream from storage."""


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_pages=settings.embedding_file_max_pages,
        max_chars=settings.embedding_file_max_chars,
        max_bytes=settings.embedding_file_max_bytes,
        max_seconds=settings.embedding_file_max_seconds,
    )


def _held_sql(collection: Collection, spec: EmbedVersion) -> sql.Composed:
    """The names each record's embedded file fields hold now: (id, name) rows."""
    names = sql.SQL(" || ").join(
        sql.SQL("coalesce(r.{}, '{{}}')").format(sql.Identifier(field)) for field in spec.files
    )
    return sql.SQL(
        "SELECT r.id::text, n.name FROM {table} r, unnest({names}) AS n(name)"
        " WHERE r.id = ANY(%s::uuid[])"
    ).format(table=sql.Identifier(collection.table.name), names=names)


def _held(
    conn: psycopg.Connection, collection: Collection, spec: EmbedVersion, ids: Sequence[str]
) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for rid, name in conn.execute(_held_sql(collection, spec), (list(ids),)).fetchall():
        held.setdefault(rid, set()).add(str(name))
    return held


def _lock(conn: psycopg.Connection, collection: Collection, ids: Sequence[str]) -> None:
    """The per-record locks embed_records takes (in id order: two tasks never deadlock)."""
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(hashtextextended(%s || id, 0)))"
        " FROM unnest(%s::text[]) AS id",
        (f"litebase embed {collection.name} ", sorted(ids)),
    )


def embed_files(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    record_ids: Sequence[str],
    settings: Settings,
    read_file: ReadFile,
    *,
    force: bool = False,
) -> int:
    """Bring the chunks of these records' documents up to date for one version; returns the
    chunks embedded anew. Raises ProviderError when the provider fails (the files written
    before stay written)."""
    spec = live.spec
    if not spec.files:
        return 0
    ids = list(record_ids)
    present = {
        row[0]
        for row in conn.execute(
            sql.SQL("SELECT id::text FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(collection.table.name)
            ),
            (ids,),
        ).fetchall()
    }
    gone = sorted(set(ids) - present)
    if gone:  # chunks went with the rows (ON DELETE CASCADE); so do the files' states
        conn.execute(
            "DELETE FROM embedding_files WHERE collection = %s AND record_id = ANY(%s::uuid[])",
            (collection.name, gone),
        )
    ids = sorted(present)
    if not ids:
        return 0
    _forget_released(conn, collection, live, ids)
    documents = conn.execute(
        sql.SQL(
            "SELECT f.record_id::text, f.name, f.content_type, f.size FROM stored_files f"
            " JOIN ({held}) AS h(id, name) ON h.id = f.record_id::text AND h.name = f.name"
            " WHERE f.collection = %s"
        ).format(held=_held_sql(collection, spec)),
        (ids, collection.name),
    ).fetchall()
    states = {
        (rid, name): (status, retryable)
        for rid, name, status, retryable in conn.execute(
            "SELECT record_id::text, name, status, retryable FROM embedding_files"
            " WHERE collection = %s AND version = %s AND record_id = ANY(%s::uuid[])",
            (collection.name, live.version, ids),
        ).fetchall()
    }
    limits = limits_of(settings)
    fresh = 0
    for rid, name, content_type, size in sorted(documents):
        kind = document_kind(content_type, name)
        state = states.get((rid, name))
        if kind is None or not (force or state is None or state == ("failed", True)):
            continue
        try:
            extracted = extract(kind, read_file(collection.name, rid, name), size, limits)
        except NotExtractable as exc:
            log.info("%s/%s/%s has no text to embed: %s", collection.name, rid, name, exc.reason)
            _write_state(conn, collection, live, rid, name, "failed", exc.reason)
            continue
        except FileNotFoundError:
            # Gone from storage: the record let go of it meanwhile (the write below checks).
            _write_state(conn, collection, live, rid, name, "failed", "the file is not in storage")
            continue
        except OSError as exc:
            log.warning("could not read %s/%s/%s: %s", collection.name, rid, name, exc)
            _write_state(
                conn, collection, live, rid, name, "failed", f"storage: {exc}", retryable=True
            )
            continue
        fresh += _embed_document(conn, collection, live, rid, name, extracted, settings, force)
    return fresh


def _forget_released(
    conn: psycopg.Connection, collection: Collection, live: LiveVersion, ids: Sequence[str]
) -> None:
    """Chunks and states of files the records no longer hold (replaced, removed)."""
    chunks = chunks_table_name(collection.table.name)
    known = conn.execute(
        f"SELECT DISTINCT record_id::text, file FROM {chunks}"  # noqa: S608
        " WHERE record_id = ANY(%s::uuid[]) AND version = %s AND file <> ''"
        " UNION SELECT record_id::text, name FROM embedding_files"
        " WHERE collection = %s AND version = %s AND record_id = ANY(%s::uuid[])",
        (list(ids), live.version, collection.name, live.version, list(ids)),
    ).fetchall()
    if not known:
        return
    held = _held(conn, collection, live.spec, ids)
    if all(name in held.get(rid, set()) for rid, name in known):
        return
    with conn.transaction():
        _lock(conn, collection, ids)
        held = _held(conn, collection, live.spec, ids)  # again, under the locks
        released = [(rid, name) for rid, name in known if name not in held.get(rid, set())]
        if not released:
            return
        pairs = ([rid for rid, _ in released], [name for _, name in released])
        conn.execute(
            f"DELETE FROM {chunks} c USING unnest(%s::uuid[], %s::text[]) AS k(id, name)"  # noqa: S608
            " WHERE c.record_id = k.id AND c.file = k.name AND c.version = %s",
            (*pairs, live.version),
        )
        conn.execute(
            "DELETE FROM embedding_files e USING unnest(%s::uuid[], %s::text[]) AS k(id, name)"
            " WHERE e.record_id = k.id AND e.name = k.name AND e.collection = %s"
            " AND e.version = %s",
            (*pairs, collection.name, live.version),
        )
    log.info("forgot the chunks of %d files %s let go of", len(released), collection.name)


def _embed_document(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    rid: str,
    name: str,
    extracted: Extracted,
    settings: Settings,
    force: bool,
) -> int:
    spec = live.spec
    chunks = chunks_table_name(collection.table.name)
    plan = [
        (page, piece, text_hash(piece))
        for page, text in extracted.parts
        for piece in chunk(text, spec.chunk_size, spec.chunk_overlap)
    ]
    hashes = sorted({h for _, _, h in plan})
    stored = {} if force else stored_vectors(conn, chunks, spec.model_label, hashes)
    fresh = {h: piece for _, piece, h in plan if h not in stored}
    if fresh:
        vectors = embedder_for(spec.choice, settings).embed(list(fresh.values()))
        stored.update(zip(fresh, (vector_literal(v) for v in vectors), strict=True))
    with conn.transaction():
        _lock(conn, collection, [rid])
        if name not in _held(conn, collection, spec, [rid]).get(rid, set()):
            return 0  # let go of while it was read: the task of that change forgets it
        conn.execute(
            f"DELETE FROM {chunks} WHERE record_id = %s AND version = %s AND file = %s"  # noqa: S608
            " AND chunk >= %s",
            (rid, live.version, name, len(plan)),
        )
        if plan:
            conn.execute(
                f"INSERT INTO {chunks} AS c (record_id, version, file, chunk, page, content,"  # noqa: S608
                " content_hash, model, embedding)"
                " SELECT %s, %s, %s, k.n, k.page, k.content, k.hash, %s, k.embedding::vector"
                " FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[], %s::text[])"
                " AS k(n, page, content, hash, embedding)"
                " ON CONFLICT (record_id, version, file, chunk) DO UPDATE SET"
                " page = excluded.page, content = excluded.content,"
                " content_hash = excluded.content_hash, model = excluded.model,"
                " embedding = excluded.embedding",
                (
                    rid,
                    live.version,
                    name,
                    spec.model_label,
                    list(range(len(plan))),
                    [page for page, _, _ in plan],
                    [piece for _, piece, _ in plan],
                    [h for _, _, h in plan],
                    [stored[h] for _, _, h in plan],
                ),
            )
        _upsert_state(
            conn, collection, live, rid, name, "done", extracted.note, False, len(plan),
            extracted.pages,
        )  # fmt: skip
    return len(fresh)


_STATE_SQL = """
    INSERT INTO embedding_files AS e
        (collection, version, record_id, name, status, error, retryable, chunks, pages)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (collection, version, record_id, name) DO UPDATE SET
        status = excluded.status, error = excluded.error, retryable = excluded.retryable,
        chunks = excluded.chunks, pages = excluded.pages, updated_at = now()
"""


def _upsert_state(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    rid: str,
    name: str,
    status: str,
    error: str | None,
    retryable: bool,
    chunks: int,
    pages: int | None,
) -> None:
    conn.execute(
        _STATE_SQL,
        (collection.name, live.version, rid, name, status, error, retryable, chunks, pages),
    )


def _write_state(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    rid: str,
    name: str,
    status: str,
    error: str,
    *,
    retryable: bool = False,
) -> None:
    """A failed file's state (its old chunks go), if the record still holds it."""
    chunks = chunks_table_name(collection.table.name)
    with conn.transaction():
        _lock(conn, collection, [rid])
        if name not in _held(conn, collection, live.spec, [rid]).get(rid, set()):
            return
        conn.execute(
            f"DELETE FROM {chunks} WHERE record_id = %s AND version = %s AND file = %s",  # noqa: S608
            (rid, live.version, name),
        )
        _upsert_state(conn, collection, live, rid, name, status, error, retryable, 0, None)


def record_file_failures(
    conn: psycopg.Connection,
    collection: Collection,
    live: LiveVersion,
    record_ids: Sequence[str],
    error: str,
) -> None:
    """The provider failed for good on these records: their documents not yet embedded are
    failed with the reason, to be tried again when the record is (the sweep, a change)."""
    if not live.spec.files:
        return
    held = _held(conn, collection, live.spec, record_ids)
    done = {
        (rid, name)
        for rid, name in conn.execute(
            "SELECT record_id::text, name FROM embedding_files WHERE collection = %s"
            " AND version = %s AND record_id = ANY(%s::uuid[]) AND status = 'done'",
            (collection.name, live.version, list(record_ids)),
        ).fetchall()
    }
    types = dict(
        ((rid, name), (content_type, name))
        for rid, name, content_type in conn.execute(
            "SELECT record_id::text, name, content_type FROM stored_files"
            " WHERE collection = %s AND record_id = ANY(%s::uuid[])",
            (collection.name, list(record_ids)),
        ).fetchall()
    )
    with conn.transaction():
        for rid, names in held.items():
            for name in names:
                typed = types.get((rid, name))
                if (rid, name) in done or typed is None or document_kind(*typed) is None:
                    continue
                _upsert_state(
                    conn, collection, live, rid, name, "failed", f"provider: {error}", True, 0,
                    None,
                )  # fmt: skip


DOCUMENT_TYPES_SQL = ", ".join(f"'{t}'" for t in DOCUMENT_TYPES)
"""The document types as an SQL list (constants of extract.py, no input)."""
