"""Files: the ledger of stored files, notes.attachments and projects.cover (docs/files.md).

Revision ID: 0021_files
Revises: 0016_outbox_traceparent
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_files"
down_revision: str | None = "0020_anonymous_and_recovery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("collection", sa.String(length=63), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("field", sa.String(length=63), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("content_type", sa.String(length=255), server_default="", nullable=False),
        sa.Column("sha256", sa.String(length=64), server_default="", nullable=False),
        sa.Column("attached", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_stored_files_uploaded_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_files")),
        sa.UniqueConstraint("collection", "record_id", "name", name="uq_stored_files_key"),
    )
    op.create_index(
        "ix_stored_files_attached_created_at",
        "stored_files",
        ["attached", "created_at"],
        unique=False,
    )
    op.add_column(
        "notes",
        sa.Column("attachments", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
    )
    op.add_column(
        "projects",
        sa.Column("cover", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("projects", "cover")
    op.drop_column("notes", "attachments")
    op.drop_index("ix_stored_files_attached_created_at", table_name="stored_files")
    op.drop_table("stored_files")
