"""API keys get scopes (read, write, keys) and an optional collection allow-list (issue 18.2).
Keys made before keep what they could do: read and write, every collection.

Revision ID: 0014_api_key_scopes
Revises: 0013_owner_erasure
Create Date: 2026-12-05 21:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_api_key_scopes"
down_revision: str | None = "0013_owner_erasure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE auth_api_keys"
        " ADD COLUMN scopes varchar(16)[] NOT NULL DEFAULT '{read,write}',"
        " ADD COLUMN collections varchar(63)[]"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE auth_api_keys DROP COLUMN collections, DROP COLUMN scopes")
