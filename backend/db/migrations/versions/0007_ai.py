"""Model gateway: per-call usage, daily usage totals, budget overrides.

Revision ID: 0007_ai
Revises: 0006_vectors
Create Date: 2026-12-01 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

revision: str = "0007_ai"
down_revision: str | None = "0006_vectors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAILY_KEY = [
    "day",
    "user_id",
    "api_key_id",
    "org_id",
    "kind",
    "model",
    "upstream_model",
    "outcome",
    "prompt_name",
    "prompt_version",
]


def upgrade() -> None:
    op.create_table(
        "ai_budgets",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("subject_kind", sa.String(length=8), nullable=False),
        sa.Column("subject_id", GUID(length=16), nullable=False),
        sa.Column("tokens_per_period", sa.BigInteger(), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_budgets")),
    )
    op.create_index(
        "ai_budgets_subject_idx", "ai_budgets", ["subject_kind", "subject_id"], unique=True
    )
    op.create_table(
        "ai_usage",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("api_key_id", GUID(length=16), nullable=True),
        sa.Column("org_id", GUID(length=16), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("prompt_name", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=True),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_usage")),
    )
    op.create_index("ai_usage_created_at_idx", "ai_usage", ["created_at"], unique=False)
    op.create_index(
        "ai_usage_user_created_at_idx", "ai_usage", ["user_id", "created_at"], unique=False
    )
    op.create_table(
        "ai_usage_daily",
        sa.Column("id", GUID(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", GUID(length=16), nullable=False),
        sa.Column("api_key_id", GUID(length=16), nullable=True),
        sa.Column("org_id", GUID(length=16), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("upstream_model", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("prompt_name", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=True),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("sa_orm_sentinel", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ai_usage_daily")),
    )
    # NULLS NOT DISTINCT: a call without a key or org still finds its day's row to add to.
    op.create_index(
        "ai_usage_daily_key_idx",
        "ai_usage_daily",
        DAILY_KEY,
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_index(
        "ai_usage_daily_user_day_idx", "ai_usage_daily", ["user_id", "day"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ai_usage_daily_user_day_idx", table_name="ai_usage_daily")
    op.drop_index("ai_usage_daily_key_idx", table_name="ai_usage_daily")
    op.drop_table("ai_usage_daily")
    op.drop_index("ai_usage_user_created_at_idx", table_name="ai_usage")
    op.drop_index("ai_usage_created_at_idx", table_name="ai_usage")
    op.drop_table("ai_usage")
    op.drop_index("ai_budgets_subject_idx", table_name="ai_budgets")
    op.drop_table("ai_budgets")
