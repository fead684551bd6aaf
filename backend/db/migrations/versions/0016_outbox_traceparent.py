"""Each outbox row keeps its writer's trace context, so the relay can continue the trace.

The writer (backend/events/tracing.py, while tracing is on) puts its span's W3C traceparent in
the transaction-local setting ``litebase.traceparent``; the capture trigger copies it into the
row. Unset (tracing off, or a write made in SQL) the column is null.

Revision ID: 0016_outbox_traceparent
Revises: 0015_budget_override_cleanup
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_outbox_traceparent"
down_revision: str | None = "0015_budget_override_cleanup"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The capture function of 0001, with and without the traceparent. current_setting(…, true) is
# null in a session that never set it, and '' in one that set it in an earlier transaction.
_CAPTURE = """
CREATE OR REPLACE FUNCTION litebase_outbox_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    collection_name text := coalesce(TG_ARGV[0], TG_TABLE_NAME);
    new_record jsonb;
    old_record jsonb;
BEGIN
    IF TG_OP <> 'DELETE' THEN new_record := to_jsonb(NEW); END IF;
    IF TG_OP <> 'INSERT' THEN old_record := to_jsonb(OLD); END IF;
    INSERT INTO outbox (collection, op, record_id, record, old{columns})
    VALUES (
        collection_name,
        lower(TG_OP),
        coalesce(new_record ->> 'id', old_record ->> 'id'),
        new_record,
        old_record{values}
    );
    PERFORM pg_notify('litebase_outbox', collection_name);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE outbox ADD COLUMN traceparent text")
    op.execute(
        _CAPTURE.format(
            columns=", traceparent",
            values=",\n        nullif(current_setting('litebase.traceparent', true), '')",
        )
    )


def downgrade() -> None:
    op.execute(_CAPTURE.format(columns="", values=""))
    op.execute("ALTER TABLE outbox DROP COLUMN traceparent")
