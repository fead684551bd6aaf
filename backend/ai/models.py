"""Gateway tables: usage per call (recent), usage per day (rolled up), budget overrides.

Usage rows carry ids but no foreign keys: they are a log, inserted in batches, and a deleted
user or key must neither fail a batch nor erase what was spent.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from advanced_alchemy.base import UUIDBase, UUIDv7AuditBase, UUIDv7Base
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Date, Delete, Float, Index, Integer, String, delete
from sqlalchemy.orm import Mapped, mapped_column

# The dimensions usage is kept by, in the per-call rows and the daily totals alike.
USAGE_DIMENSIONS = (
    "user_id",
    "api_key_id",
    "org_id",
    "kind",
    "model",
    "upstream_model",
    "outcome",
    "prompt_name",
    "prompt_version",
)


class AIUsage(UUIDBase):
    __tablename__ = "ai_usage"
    __table_args__ = (
        Index("ai_usage_created_at_idx", "created_at"),
        Index("ai_usage_user_created_at_idx", "user_id", "created_at"),
    )

    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    user_id: Mapped[UUID]
    api_key_id: Mapped[UUID | None]
    org_id: Mapped[UUID | None]
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(32))
    prompt_name: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(100))


class AIUsageDaily(UUIDv7Base):
    __tablename__ = "ai_usage_daily"
    __table_args__ = (
        Index(
            "ai_usage_daily_key_idx",
            "day",
            *USAGE_DIMENSIONS,
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ai_usage_daily_user_day_idx", "user_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date)
    user_id: Mapped[UUID]
    api_key_id: Mapped[UUID | None]
    org_id: Mapped[UUID | None]
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    upstream_model: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(32))
    prompt_name: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(100))
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)  # the sum, for averages


class AIBudget(UUIDv7AuditBase):
    """An admin's override of a subject's limits; a null column keeps the setting's default."""

    __tablename__ = "ai_budgets"
    __table_args__ = (Index("ai_budgets_subject_idx", "subject_kind", "subject_id", unique=True),)

    subject_kind: Mapped[str] = mapped_column(String(8))
    subject_id: Mapped[UUID]
    tokens_per_period: Mapped[int | None] = mapped_column(BigInteger)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)


def delete_budget_override(kind: str, subject: UUID) -> Delete:
    """The statement removing a subject's override (an admin clearing it; a deleted subject's
    goes by trigger, migration 0015, as the table has no foreign keys to its subjects)."""
    return delete(AIBudget).where(AIBudget.subject_kind == kind, AIBudget.subject_id == subject)
