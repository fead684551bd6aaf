"""Delayed jobs (run_at), idempotency keys for jobs, and user-visible job schedules.

Revision ID: 0009_schedules
Revises: 0008_webhooks
Create Date: 2026-12-01 18:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_schedules"
down_revision: str | None = "0008_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("run_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_unique_constraint("uq_jobs_idempotency_key", "jobs", ["idempotency_key"])
    op.create_table(
        "job_schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=False),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_id", sa.Uuid(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_job_schedules_owner_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_job_schedules_org_orgs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["last_job_id"],
            ["jobs.id"],
            name=op.f("fk_job_schedules_last_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedules")),
    )
    op.create_index(op.f("ix_job_schedules_owner"), "job_schedules", ["owner"], unique=False)
    op.create_index(
        "job_schedules_due_idx", "job_schedules", ["enabled", "next_run_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("job_schedules_due_idx", table_name="job_schedules")
    op.drop_index(op.f("ix_job_schedules_owner"), table_name="job_schedules")
    op.drop_table("job_schedules")
    op.drop_constraint("uq_jobs_idempotency_key", "jobs", type_="unique")
    op.drop_column("jobs", "idempotency_key")
    op.drop_column("jobs", "run_at")
