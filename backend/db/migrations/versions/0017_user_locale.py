"""Users get a language: their mails are written in it (backend/mail), English when unset or
when no templates speak it.

Revision ID: 0017_user_locale
Revises: 0016_outbox_traceparent
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_user_locale"
down_revision: str | None = "0016_outbox_traceparent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("locale", sa.String(length=35), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "locale")
