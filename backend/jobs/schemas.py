"""API shapes for /jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec


class NewJob(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    # A delay: seconds from now, or a time (with its offset). At most the broker's visibility
    # timeout ahead (CELERY_VISIBILITY_TIMEOUT_SECONDS); later than that is a schedule's job.
    countdown: Annotated[float, msgspec.Meta(ge=0)] | None = None
    run_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    type: str
    status: str
    progress: float
    result: Any | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_at: datetime | None


class NewSchedule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    # Five fields, in UTC: minute hour day-of-month month day-of-week.
    cron: Annotated[str, msgspec.Meta(max_length=100)]
    enabled: bool = True


class ScheduleChange(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str | None = None
    input: dict[str, Any] | None = None
    cron: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    enabled: bool | None = None


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    type: str
    input: dict[str, Any]
    cron: str
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: UUID | None
    created_at: datetime
    updated_at: datetime
