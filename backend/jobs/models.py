"""The jobs table. Its changes feed the outbox, so status and progress reach `job:<id>`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")


class Job(UUIDv7AuditBase):
    __tablename__ = "jobs"
    __table_args__ = (Index("jobs_owner_status_idx", "owner", "status"),)

    owner: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    org: Mapped[UUID | None] = mapped_column(ForeignKey("orgs.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    result: Mapped[Any | None] = mapped_column(JSONB, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Not before this (a delayed job); None: as soon as a worker is free.
    run_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # Unique when set: whoever creates a job under a key it already has creates nothing (a
    # schedule's run for one due time, however many beats claim it).
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None, unique=True)


class JobInput(UUIDv7AuditBase):
    """A job's input, apart from the job row: progress updates (which feed the outbox) do not
    copy a large input every time."""

    __tablename__ = "job_inputs"

    job_id: Mapped[UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), unique=True, index=True
    )
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)


class JobSchedule(UUIDv7AuditBase):
    """A cron-like schedule: at each due time, beat starts one job of its type, as its owner."""

    __tablename__ = "job_schedules"
    __table_args__ = (Index("job_schedules_due_idx", "enabled", "next_run_at"),)

    owner: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org: Mapped[UUID | None] = mapped_column(ForeignKey("orgs.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(100))
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    cron: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    next_run_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_job_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None
    )
