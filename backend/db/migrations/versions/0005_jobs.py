"""Jobs and their inputs; job changes feed the outbox (for realtime job:<id>).

Revision ID: 0005_jobs
Revises: 0004_outbox_relay
Create Date: 2026-11-22 04:08:06.407343
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from backend.db.outbox import attach_outbox_sql, detach_outbox_sql
from sqlalchemy.dialects import postgresql

revision: str = "0005_jobs"
down_revision: str | None = "0004_outbox_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner", sa.Uuid(), nullable=False),
        sa.Column("org", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("progress", sa.Float(), server_default="0", nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org"], ["orgs.id"], name=op.f("fk_jobs_org_orgs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["owner"], ["users.id"], name=op.f("fk_jobs_owner_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("jobs_owner_status_idx", "jobs", ["owner", "status"], unique=False)
    op.create_table(
        "job_inputs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_inputs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_inputs")),
    )
    op.create_index(op.f("ix_job_inputs_job_id"), "job_inputs", ["job_id"], unique=True)
    op.execute(attach_outbox_sql("jobs"))


def downgrade() -> None:
    op.execute(detach_outbox_sql("jobs"))
    op.drop_index(op.f("ix_job_inputs_job_id"), table_name="job_inputs")
    op.drop_table("job_inputs")
    op.drop_index("jobs_owner_status_idx", table_name="jobs")
    op.drop_table("jobs")
