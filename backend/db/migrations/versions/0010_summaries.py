"""Retrying failed embeddings: embedding_records.retries and retry_at, read by the sweep.

(The revision id was handed out with the summarize_record work; summaries themselves need no
table, so this revision carries the embedding sweep's columns.)

Revision ID: 0010_summaries
Revises: 0009_schedules
Create Date: 2026-12-01 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_summaries"
down_revision: str | None = "0009_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # retries: times the sweep sent a failed record again since its text last changed;
    # retry_at: when it may next (failed rows only).
    op.execute(
        "ALTER TABLE embedding_records ADD COLUMN retries integer NOT NULL DEFAULT 0,"
        " ADD COLUMN retry_at timestamptz"
    )
    # Failures whose text is unchanged since they failed before this column existed are due now.
    op.execute("UPDATE embedding_records SET retry_at = now() WHERE status = 'failed'")
    op.execute(
        "CREATE INDEX embedding_records_retry_due ON embedding_records (retry_at)"
        " WHERE status = 'failed'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX embedding_records_retry_due")
    op.execute("ALTER TABLE embedding_records DROP COLUMN retry_at, DROP COLUMN retries")
