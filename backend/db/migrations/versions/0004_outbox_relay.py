"""Outbox relay position: the last id handed on, and the transaction horizon of that read.

Revision ID: 0004_outbox_relay
Revises: 0003_collections
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_outbox_relay"
down_revision: str | None = "0003_collections"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE outbox_relay_state (
            name text PRIMARY KEY,
            last_id bigint NOT NULL DEFAULT 0,
            horizon bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # Late committers are found by transaction id.
    op.execute("CREATE INDEX outbox_xid_idx ON outbox (xid)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS outbox_xid_idx")
    op.execute("DROP TABLE IF EXISTS outbox_relay_state")
