"""Changing an account's email: the address an email_change token will switch the account to.

Revision ID: 0011_email_change
Revises: 0010_summaries
Create Date: 2026-12-02 01:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_email_change"
down_revision: str | None = "0010_summaries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE auth_email_tokens ADD COLUMN new_email varchar(320)")


def downgrade() -> None:
    op.execute("DELETE FROM auth_email_tokens WHERE purpose = 'email_change'")
    op.execute("ALTER TABLE auth_email_tokens DROP COLUMN new_email")
