"""Example collections: notes, projects, tasks, messages — each feeding the outbox.

Revision ID: 0003_collections
Revises: 0002_auth
Create Date: 2026-11-22 03:14:30.930529
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.db.outbox import attach_outbox_sql, detach_outbox_sql


revision: str = "0003_collections"
down_revision: str | None = "0002_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLLECTION_TABLES = ("notes", "projects", "tasks", "messages")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("room", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=True),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_messages_org_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_messages_owner_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"], unique=False)
    op.create_index(op.f("ix_messages_org"), "messages", ["org"], unique=False)
    op.create_index(op.f("ix_messages_owner"), "messages", ["owner"], unique=False)
    op.create_index(op.f("ix_messages_room"), "messages", ["room"], unique=False)
    op.create_table(
        "notes",
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("public", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("tags", sa.ARRAY(sa.String(length=50)), server_default="{}", nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=True),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_notes_org_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_notes_owner_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_created_at"), "notes", ["created_at"], unique=False)
    op.create_index(op.f("ix_notes_org"), "notes", ["org"], unique=False)
    op.create_index(op.f("ix_notes_owner"), "notes", ["owner"], unique=False)
    op.create_table(
        "projects",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=True),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_projects_org_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_projects_owner_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_index(op.f("ix_projects_created_at"), "projects", ["created_at"], unique=False)
    op.create_index(op.f("ix_projects_org"), "projects", ["org"], unique=False)
    op.create_index(op.f("ix_projects_owner"), "projects", ["owner"], unique=False)
    op.create_table(
        "tasks",
        sa.Column("project", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum("todo", "doing", "done", name="task_status", native_enum=False, length=10),
            server_default="todo",
            nullable=False,
        ),
        sa.Column("assignee", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=True),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assignee"], ["users.id"], name=op.f("fk_tasks_assignee_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_tasks_org_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_tasks_owner_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["project"], ["projects.id"], name=op.f("fk_tasks_project_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_created_at"), "tasks", ["created_at"], unique=False)
    op.create_index(op.f("ix_tasks_org"), "tasks", ["org"], unique=False)
    op.create_index(op.f("ix_tasks_owner"), "tasks", ["owner"], unique=False)
    op.create_index(op.f("ix_tasks_project"), "tasks", ["project"], unique=False)
    for table in COLLECTION_TABLES:
        op.execute(attach_outbox_sql(table))


def downgrade() -> None:
    for table in COLLECTION_TABLES:
        op.execute(detach_outbox_sql(table))
    op.drop_index(op.f("ix_tasks_project"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_owner"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_org"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_created_at"), table_name="tasks")
    op.drop_table("tasks")
    op.drop_index(op.f("ix_projects_owner"), table_name="projects")
    op.drop_index(op.f("ix_projects_org"), table_name="projects")
    op.drop_index(op.f("ix_projects_created_at"), table_name="projects")
    op.drop_table("projects")
    op.drop_index(op.f("ix_notes_owner"), table_name="notes")
    op.drop_index(op.f("ix_notes_org"), table_name="notes")
    op.drop_index(op.f("ix_notes_created_at"), table_name="notes")
    op.drop_table("notes")
    op.drop_index(op.f("ix_messages_room"), table_name="messages")
    op.drop_index(op.f("ix_messages_owner"), table_name="messages")
    op.drop_index(op.f("ix_messages_org"), table_name="messages")
    op.drop_index(op.f("ix_messages_created_at"), table_name="messages")
    op.drop_table("messages")
