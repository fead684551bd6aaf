"""Foundation: the vector extension, the outbox table and its capture trigger function.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            collection text NOT NULL,
            op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
            record_id text NOT NULL,
            record jsonb,
            old jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX outbox_created_at_idx ON outbox (created_at)")
    op.execute("CREATE INDEX outbox_collection_id_idx ON outbox (collection, id)")
    # One NOTIFY per collection per transaction: Postgres folds identical payloads, so a
    # 1,000-row batch wakes the relay once, and the relay reads the rows from the table.
    op.execute(
        """
        CREATE FUNCTION litebase_outbox_capture() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            collection_name text := coalesce(TG_ARGV[0], TG_TABLE_NAME);
            new_record jsonb;
            old_record jsonb;
        BEGIN
            IF TG_OP <> 'DELETE' THEN new_record := to_jsonb(NEW); END IF;
            IF TG_OP <> 'INSERT' THEN old_record := to_jsonb(OLD); END IF;
            INSERT INTO outbox (collection, op, record_id, record, old)
            VALUES (
                collection_name,
                lower(TG_OP),
                coalesce(new_record ->> 'id', old_record ->> 'id'),
                new_record,
                old_record
            );
            PERFORM pg_notify('litebase_outbox', collection_name);
            RETURN NULL;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS litebase_outbox_capture() CASCADE")
    op.execute("DROP TABLE IF EXISTS outbox")
    # The vector extension stays: other schemas in the database may use it.
