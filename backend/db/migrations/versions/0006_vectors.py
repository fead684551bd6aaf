"""Vector search: embedding versions, per-record embedding state, failures, notes' chunks.

Revision ID: 0006_vectors
Revises: 0005_jobs
Create Date: 2026-11-22 05:50:00
"""

from collections.abc import Sequence

from alembic import op

from backend.vectors.schema import create_chunks_table_sql, drop_chunks_table_sql

revision: str = "0006_vectors"
down_revision: str | None = "0005_jobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMBEDDED_TABLES = ("notes",)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE embedding_versions (
            collection text NOT NULL,
            version text NOT NULL,
            provider text NOT NULL,
            model text NOT NULL,
            dimensions integer NOT NULL,
            fields text[] NOT NULL,
            chunk_size integer NOT NULL,
            chunk_overlap integer NOT NULL,
            state text NOT NULL CHECK (state IN ('building', 'active')),
            created_at timestamptz NOT NULL DEFAULT now(),
            activated_at timestamptz,
            PRIMARY KEY (collection, version)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX embedding_versions_one_active ON embedding_versions (collection)"
        " WHERE state = 'active'"
    )
    op.execute(
        """
        CREATE TABLE embedding_records (
            collection text NOT NULL,
            version text NOT NULL,
            record_id uuid NOT NULL,
            status text NOT NULL CHECK (status IN ('done', 'failed')),
            source_hash text NOT NULL,
            chunks integer NOT NULL DEFAULT 0,
            error text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (collection, version, record_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE embedding_failures (
            id bigserial PRIMARY KEY,
            collection text NOT NULL,
            version text NOT NULL,
            record_id uuid NOT NULL,
            error text NOT NULL,
            attempts integer NOT NULL,
            failed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX embedding_failures_record ON embedding_failures"
        " (collection, record_id, failed_at)"
    )
    for table in EMBEDDED_TABLES:
        for statement in create_chunks_table_sql(table):
            op.execute(statement)


def downgrade() -> None:
    for table in EMBEDDED_TABLES:
        op.execute(drop_chunks_table_sql(table))
    op.execute("DROP TABLE embedding_failures")
    op.execute("DROP TABLE embedding_records")
    op.execute("DROP TABLE embedding_versions")
