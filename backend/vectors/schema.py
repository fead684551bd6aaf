"""Tables behind vector search: one chunks table per embedded collection, plus shared state.

``<collection>_chunks`` holds each record's chunks for each embedding *version* (a provider,
model, size and chunking): those of its text fields (``file`` empty) and those of each of its
files that ``Embed(files=...)`` names (``file`` the stored name, ``page`` the PDF page, from 1).
Its ``embedding`` column is an untyped ``vector`` so that two
versions of different sizes can live side by side while a collection is re-embedded; each
version gets its own partial HNSW index over ``embedding::vector(<dims>)``, and queries name
the version and the size literally so the planner can match that index.

Shared tables (migration 0006): ``embedding_versions`` (one row per collection and live
version: the active one search reads, and at most one building beside it),
``embedding_records`` (what each record was last embedded from, per version) and
``embedding_failures`` (what failed after its retries, and why).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import psycopg
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import TSVECTOR

from backend.db.outbox import _checked_identifier

TEXT_SEARCH_CONFIG = "english"
_VERSION = re.compile(r"^[0-9a-f]{12}$")
_metadata = sa.MetaData()  # not the app's: Alembic does not manage these Table objects


def chunks_table_name(collection_table: str) -> str:
    return _checked_identifier(f"{collection_table}_chunks")


def create_chunks_table_sql(collection_table: str) -> list[str]:
    """DDL for a collection's chunks table; call it from the migration that embeds the table."""
    table = _checked_identifier(collection_table)
    chunks = chunks_table_name(table)
    return [
        f"""CREATE TABLE {chunks} (
            record_id uuid NOT NULL REFERENCES {table}(id) ON DELETE CASCADE,
            version text NOT NULL,
            file text NOT NULL DEFAULT '',
            chunk integer NOT NULL,
            page integer,
            content text NOT NULL,
            content_hash text NOT NULL,
            model text NOT NULL,
            embedding vector NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('{TEXT_SEARCH_CONFIG}', content)) STORED,
            PRIMARY KEY (record_id, version, file, chunk)
        )""",
        f"CREATE INDEX {chunks}_tsv ON {chunks} USING gin (tsv)",
        f"CREATE INDEX {chunks}_reuse ON {chunks} (model, content_hash)",
    ]


def add_file_chunks_sql(collection_table: str) -> list[str]:
    """DDL that gives a chunks table made before files were embedded (migration 0022) its
    ``file`` and ``page`` columns and the primary key that names the file; idempotent."""
    chunks = chunks_table_name(collection_table)
    return [
        f"ALTER TABLE {chunks} ADD COLUMN IF NOT EXISTS file text NOT NULL DEFAULT '',"
        " ADD COLUMN IF NOT EXISTS page integer",
        f"ALTER TABLE {chunks} DROP CONSTRAINT IF EXISTS {chunks}_pkey,"
        " ADD PRIMARY KEY (record_id, version, file, chunk)",
    ]


def drop_file_chunks_sql(collection_table: str) -> list[str]:
    """add_file_chunks_sql undone: the files' chunks go, then the columns."""
    chunks = chunks_table_name(collection_table)
    return [
        f"DELETE FROM {chunks} WHERE file <> ''",  # noqa: S608 - a checked identifier
        f"ALTER TABLE {chunks} DROP CONSTRAINT IF EXISTS {chunks}_pkey,"
        " ADD PRIMARY KEY (record_id, version, chunk)",
        f"ALTER TABLE {chunks} DROP COLUMN IF EXISTS file, DROP COLUMN IF EXISTS page",
    ]


def drop_chunks_table_sql(collection_table: str) -> str:
    return f"DROP TABLE IF EXISTS {chunks_table_name(collection_table)}"


def checked_version(version: str) -> str:
    if not _VERSION.match(version):
        raise ValueError(f"{version!r} is not an embedding version")
    return version


def hnsw_index_name(collection_table: str, version: str) -> str:
    return f"{chunks_table_name(collection_table)}_hnsw_{checked_version(version)}"


def create_hnsw_index_sql(
    collection_table: str, version: str, dimensions: int, *, m: int = 16, ef_construction: int = 64
) -> str:
    """A version's partial HNSW cosine index, built with ``m`` and ``ef_construction``
    (VECTOR_HNSW_M / VECTOR_HNSW_EF_CONSTRUCTION; pgvector's defaults here)."""
    chunks = chunks_table_name(collection_table)
    return (
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name(collection_table, version)} ON {chunks} "
        f"USING hnsw ((embedding::vector({int(dimensions)})) vector_cosine_ops) "
        f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
        f"WHERE version = '{checked_version(version)}'"
    )


def drop_hnsw_index_sql(collection_table: str, version: str) -> str:
    return f"DROP INDEX IF EXISTS {hnsw_index_name(collection_table, version)}"


@cache
def chunks_table(collection_table: str) -> sa.Table:
    """The chunks table as SQLAlchemy sees it, for building search statements."""
    return sa.Table(
        chunks_table_name(collection_table),
        _metadata,
        sa.Column("record_id", sa.Uuid(), primary_key=True),
        sa.Column("version", sa.Text(), primary_key=True),
        sa.Column("file", sa.Text(), primary_key=True),
        sa.Column("chunk", sa.Integer(), primary_key=True),
        sa.Column("page", sa.Integer()),
        sa.Column("content", sa.Text()),
        sa.Column("content_hash", sa.Text()),
        sa.Column("model", sa.Text()),
        sa.Column("embedding", Vector()),
        sa.Column("tsv", TSVECTOR()),
    )


def stored_vectors(
    conn: psycopg.Connection, chunks: str, model_label: str, hashes: Sequence[str]
) -> dict[str, str]:
    """The vectors ``chunks`` already holds for these content hashes under this model, as
    pgvector text: the same text is never sent to the provider twice."""
    rows = conn.execute(
        f"SELECT DISTINCT ON (content_hash) content_hash, embedding::text FROM {chunks}"  # noqa: S608
        " WHERE model = %s AND content_hash = ANY(%s)",
        (model_label, list(hashes)),
    ).fetchall()
    return {content_hash: vector for content_hash, vector in rows}
