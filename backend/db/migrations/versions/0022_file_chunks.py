"""Documents into vectors: chunks of files, per-file embedding state (docs/files.md).

Every chunks table gets ``file`` (the stored name; empty for the record's text fields) and
``page`` (a PDF's page, from 1), with a primary key that names the file; ``embedding_versions``
remembers which file fields a version embeds; ``embedding_files`` holds each file's state per
version (done, or failed with the reason; no row: pending).

Revision ID: 0022_file_chunks
Revises: 0021_files
Create Date: 2026-12-06 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.vectors.schema import add_file_chunks_sql, drop_file_chunks_sql

revision: str = "0022_file_chunks"
down_revision: str | None = "0021_files"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _chunk_tables() -> list[str]:
    """The collection tables that have a chunks table (the example's and any app's)."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT left(c.table_name, -length('_chunks')) FROM information_schema.columns c"
            " WHERE c.table_schema = current_schema() AND c.table_name LIKE '%\\_chunks'"
            " AND c.column_name = 'content_hash'"
        )
    )
    return sorted(str(row[0]) for row in rows)


def upgrade() -> None:
    for table in _chunk_tables():
        for statement in add_file_chunks_sql(table):
            op.execute(statement)
    op.execute(
        "ALTER TABLE embedding_versions ADD COLUMN IF NOT EXISTS files text[] NOT NULL"
        " DEFAULT '{}'"
    )
    op.execute(
        """
        CREATE TABLE embedding_files (
            collection text NOT NULL,
            version text NOT NULL,
            record_id uuid NOT NULL,
            name text NOT NULL,
            status text NOT NULL CHECK (status IN ('done', 'failed')),
            chunks integer NOT NULL DEFAULT 0,
            pages integer,
            error text,
            retryable boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection, version, record_id, name)
        )
        """
    )
    op.execute(
        "CREATE INDEX embedding_files_failed ON embedding_files (collection, version, updated_at)"
        " WHERE status = 'failed'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE embedding_files")
    op.execute("ALTER TABLE embedding_versions DROP COLUMN files")
    for table in _chunk_tables():
        for statement in drop_file_chunks_sql(table):
            op.execute(statement)
