"""A deleted account's rows go with it where the collection's rules read `owner` (notes,
messages: `on_owner_delete="delete"`, the default for such collections); projects and tasks
belong to their org and keep theirs, with no owner (issue 18.1).

Revision ID: 0013_owner_erasure
Revises: 0012_totp
Create Date: 2026-12-05 21:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_owner_erasure"
down_revision: str | None = "0012_totp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERASED_WITH_OWNER = ("notes", "messages")


def _owner_key(table: str, ondelete: str) -> None:
    name = f"fk_{table}_owner_users"
    op.drop_constraint(name, table, type_="foreignkey")
    op.create_foreign_key(name, table, "users", ["owner"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    for table in ERASED_WITH_OWNER:
        _owner_key(table, "CASCADE")


def downgrade() -> None:
    for table in ERASED_WITH_OWNER:
        _owner_key(table, "SET NULL")
