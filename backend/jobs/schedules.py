"""Schedules: a job type, an input and a cron expression; at each due time one job starts.

The API side (ScheduleService) checks a schedule as POST /jobs checks a job, plus what
schedules add: the type must be in JOBS_SCHEDULABLE_TYPES and the cron may not fire more often
than JOBS_SCHEDULE_MIN_INTERVAL_SECONDS. The worker side (fire_due_schedules, run by beat's
jobs.fire_schedules) claims due schedules with FOR UPDATE SKIP LOCKED and creates each run's
job under an idempotency key (schedule + due time, unique in jobs): two beats, a retried task
or a restart never start one run twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from celery.schedules import crontab
from psycopg.types.json import Jsonb
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.config import Settings
from backend.db.locks import lock_subject
from backend.errors import Invalid, NotFound, TooMany, invalid_field
from backend.identity import Principal
from backend.jobs.cron import CronError, next_run, parse_cron, shortest_gap
from backend.jobs.models import ACTIVE_STATUSES, JobSchedule
from backend.jobs.schemas import NewSchedule, ScheduleChange, ScheduleView
from backend.jobs.service import check_job
from backend.jobs.types import JOB_TYPES, InputChecks
from backend.lib.clock import Clock
from backend.paging import Page, Paging, by_offset, page_by_offset

log = logging.getLogger(__name__)

FIRE_SCHEDULES_TASK = "jobs.fire_schedules"


def schedule_view(schedule: JobSchedule) -> ScheduleView:
    return msgspec.convert(schedule, ScheduleView, from_attributes=True)


def _cron_problem(message: str) -> Invalid:
    return invalid_field(f"The cron expression {message}", "cron", message)


class ScheduleService:
    def __init__(
        self,
        db: AsyncSession,
        settings: Settings,
        clock: Clock,
        input_checks: InputChecks,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.input_checks = input_checks

    def _check(
        self, principal: Principal, type_name: str, raw_input: Any, expression: str
    ) -> crontab:
        """The parsed cron, if this caller may schedule this job; else the refusal."""
        check_job(principal, type_name, raw_input, self.input_checks)
        allowed = self.settings.jobs_schedulable_types
        if type_name not in allowed:
            message = (
                f"may not be scheduled; schedulable: {', '.join(allowed)}"
                if allowed
                else "may not be scheduled; no type is (JOBS_SCHEDULABLE_TYPES)"
            )
            raise Invalid(
                f"{type_name} {message}",
                errors=[{"field": "type", "message": message, "source": "body"}],
            )
        try:
            schedule = parse_cron(expression)
        except CronError as exc:
            raise _cron_problem(f"is not valid: {exc}") from None
        least = self.settings.jobs_schedule_min_interval_seconds
        gap = shortest_gap(schedule, self.clock.now()).total_seconds()
        if gap < least:
            raise _cron_problem(
                f"fires {gap:.0f}s apart at its closest; the least allowed is {least}s"
            )
        return schedule

    async def create(self, principal: Principal, data: NewSchedule) -> JobSchedule:
        schedule = self._check(principal, data.type, data.input, data.cron)
        await lock_subject(self.db, "schedules", principal.user_id)  # the cap holds under races
        have = await self.db.scalar(
            select(func.count())
            .select_from(JobSchedule)
            .where(JobSchedule.owner == principal.user_id)
        )
        if int(have or 0) >= self.settings.jobs_max_schedules_per_user:
            raise TooMany(
                f"You have {have} schedules, the most allowed; delete one first",
                code="too_many_schedules",
            )
        row = JobSchedule(
            owner=principal.user_id,
            org=principal.org_id,
            type=data.type,
            input=data.input,
            cron=" ".join(data.cron.split()),
            enabled=data.enabled,
            next_run_at=next_run(schedule, self.clock.now()),
        )
        self.db.add(row)
        await self.db.flush()
        return row

    async def _mine(
        self, principal: Principal, schedule_id: UUID, *, lock: bool = False
    ) -> JobSchedule:
        statement = select(JobSchedule).where(JobSchedule.id == schedule_id)
        if lock:  # a change waits for a beat that is starting this schedule's run, and v.v.
            statement = statement.with_for_update()
        row = await self.db.scalar(statement)
        if row is None or (row.owner != principal.user_id and not principal.is_admin):
            raise NotFound("No such schedule", code="not_found")
        return row

    async def get(self, principal: Principal, schedule_id: UUID) -> JobSchedule:
        return await self._mine(principal, schedule_id)

    async def list_mine(self, principal: Principal, paging: Paging) -> Page[JobSchedule]:
        rows = await self.db.scalars(
            by_offset(
                select(JobSchedule)
                .where(JobSchedule.owner == principal.user_id)
                .order_by(JobSchedule.created_at),
                paging,
            )
        )
        return page_by_offset(rows.all(), paging)

    async def change(
        self, principal: Principal, schedule_id: UUID, data: ScheduleChange
    ) -> JobSchedule:
        row = await self._mine(principal, schedule_id, lock=True)
        type_name = data.type if data.type is not None else row.type
        job_input = data.input if data.input is not None else row.input
        expression = " ".join(data.cron.split()) if data.cron is not None else row.cron
        schedule = self._check(principal, type_name, job_input, expression)
        resumed = data.enabled is True and not row.enabled
        if expression != row.cron or resumed:
            # From now on: a paused schedule does not catch up on the runs it missed.
            row.next_run_at = next_run(schedule, self.clock.now())
        row.type, row.input, row.cron = type_name, job_input, expression
        if data.enabled is not None:
            row.enabled = data.enabled
        await self.db.flush()
        return row

    async def delete(self, principal: Principal, schedule_id: UUID) -> None:
        row = await self._mine(principal, schedule_id, lock=True)
        await self.db.delete(row)
        await self.db.flush()


def run_key(schedule_id: str, due: datetime) -> str:
    """The idempotency key of one run of a schedule: at most one job per schedule and due time."""
    return f"schedule:{schedule_id}:{due.isoformat()}"


def fire_due_schedules(
    conn: psycopg.Connection, now: datetime, settings: Settings, *, limit: int = 100
) -> list[str]:
    """Start the job of every schedule due at ``now``; returns the ids of the jobs created (to
    hand to the workers after the commit: a job not handed on is found by the sweeper).

    A schedule whose previous job is still queued or running skips this run (runs never pile
    up); one whose type is no longer schedulable, or whose admin-only type's owner is no longer
    an admin, skips it too. Runs missed while beat was down collapse into one.
    """
    created: list[str] = []
    with conn.transaction():
        due_rows = conn.execute(
            "SELECT s.id::text, s.owner::text, s.org::text, s.type, s.input, s.cron,"
            " s.next_run_at, u.role, j.status"
            " FROM job_schedules s JOIN users u ON u.id = s.owner"
            " LEFT JOIN jobs j ON j.id = s.last_job_id"
            " WHERE s.enabled AND s.next_run_at <= %s"
            " ORDER BY s.next_run_at LIMIT %s"
            " FOR UPDATE OF s SKIP LOCKED",
            (now, limit),
        ).fetchall()
        for schedule_id, owner, org, type_name, job_input, expression, due, role, last in due_rows:
            job_type = JOB_TYPES.get(type_name)
            if job_type is None or type_name not in settings.jobs_schedulable_types:
                reason = f"{type_name} is not schedulable"
            elif job_type.admin_only and role != "admin":
                reason = f"{type_name} is for admins; the owner is not one"
            elif last in ACTIVE_STATUSES:
                reason = "its previous job has not finished"
            else:
                reason = ""
            job_id = None
            if reason:
                log.warning("schedule %s skips its run at %s: %s", schedule_id, due, reason)
            else:
                job_id = _create_job(
                    conn, owner, org, type_name, job_input, run_key(schedule_id, due)
                )
                if job_id is not None:
                    created.append(job_id)
            try:
                following = next_run(parse_cron(expression), max(now, due))
            except CronError:  # stored before a change of rules; stop rather than loop
                log.error("schedule %s has an invalid cron %r; disabled", schedule_id, expression)
                conn.execute(
                    "UPDATE job_schedules SET enabled = false, updated_at = now() WHERE id = %s",
                    (schedule_id,),
                )
                continue
            conn.execute(
                "UPDATE job_schedules SET next_run_at = %s, updated_at = now(),"
                " last_run_at = CASE WHEN %s::uuid IS NULL THEN last_run_at ELSE %s END,"
                " last_job_id = coalesce(%s::uuid, last_job_id)"
                " WHERE id = %s",
                (following, job_id, due, job_id, schedule_id),
            )
    return created


def _create_job(
    conn: psycopg.Connection,
    owner: str,
    org: str | None,
    type_name: str,
    job_input: dict[str, Any],
    key: str,
) -> str | None:
    """A queued job under ``key``; None if that key has its job already."""
    row = conn.execute(
        "INSERT INTO jobs (id, owner, org, type, idempotency_key, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, now(), now())"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id::text",
        (uuid.uuid4(), owner, org, type_name, key),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "INSERT INTO job_inputs (id, job_id, input, created_at, updated_at)"
        " VALUES (%s, %s, %s, now(), now())",
        (uuid.uuid4(), row[0], Jsonb(job_input)),
    )
    job_id: str = row[0]
    return job_id
