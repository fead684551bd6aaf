"""Anonymous users and two-factor recovery codes (issue 21, items 3 and 4).

Users made by grant_type anonymous have no email until they confirm one, and are marked
``is_anonymous`` (a partial index finds them for the idle sweep). Recovery codes are rows of
their own: one per code, its HMAC, and when it was used.

Revision ID: 0020_anonymous_and_recovery
Revises: 0016_outbox_traceparent
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_anonymous_and_recovery"
down_revision: str | None = "0019_passkeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL,"
        " ADD COLUMN is_anonymous boolean DEFAULT false NOT NULL"
    )
    op.create_index(
        "users_anonymous_created_at_idx",
        "users",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("is_anonymous"),
    )
    op.create_table(
        "auth_recovery_codes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_auth_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_auth_recovery_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_auth_recovery_codes_user_id"), "auth_recovery_codes", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_recovery_codes_user_id"), table_name="auth_recovery_codes")
    op.drop_table("auth_recovery_codes")
    op.drop_index("users_anonymous_created_at_idx", table_name="users")
    # Anonymous users have no email, which the column required before: they go.
    op.execute("DELETE FROM users WHERE email IS NULL")
    op.execute("ALTER TABLE users DROP COLUMN is_anonymous, ALTER COLUMN email SET NOT NULL")
