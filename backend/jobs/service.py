"""Submitting, reading and cancelling jobs (the API side; workers/jobs.py runs them)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import msgspec
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.db.locks import lock_subject
from backend.db.transactions import after_commit
from backend.errors import Conflict, Forbidden, Invalid, NotFound, TooMany
from backend.identity import Principal
from backend.jobs.models import ACTIVE_STATUSES, Job, JobInput
from backend.jobs.schemas import JobView, NewJob
from backend.jobs.types import (
    JOB_TYPES,
    InputCheck,
    InputChecks,
    JobType,
    ReindexCollection,
    parse_input,
)
from backend.lib.clock import Clock
from backend.paging import Page, Paging, by_key, page_by_key
from backend.problems import locate

log = logging.getLogger(__name__)

RUN_JOB_TASK = "jobs.run"


def job_view(job: Job) -> JobView:
    return msgspec.convert(job, JobView, from_attributes=True)


def send_job(
    celery: Celery, job_id: UUID | str, type_name: str, run_at: datetime | None = None
) -> None:
    """Hand one job to the workers: on its type's queue, not before ``run_at``, and stopped
    (SoftTimeLimitExceeded, so it is marked failed) after its type's timeout."""
    options: dict[str, Any] = {}
    job_type = JOB_TYPES.get(type_name)
    if job_type is not None:
        options["soft_time_limit"] = job_type.timeout_seconds
        if job_type.queue:
            options["queue"] = job_type.queue
    celery.send_task(RUN_JOB_TASK, args=[str(job_id)], eta=run_at, **options)


async def enqueue(
    celery: Celery, job_id: UUID, type_name: str, run_at: datetime | None = None
) -> bool:
    """Hand the job to the workers (not before ``run_at``); False if the broker refused (the
    sweeper retries)."""
    try:
        await asyncio.to_thread(send_job, celery, job_id, type_name, run_at)
    except Exception:
        log.exception("could not queue job %s; the sweeper will", job_id)
        return False
    return True


def check_job(
    principal: Principal, type_name: str, raw_input: Any, input_checks: InputChecks
) -> JobType:
    """The job type, if this caller may start it with this input; else the refusal (a domain error)
    (422 naming the field, 403 for an admin-only type). Jobs and schedules check the same."""
    job_type = JOB_TYPES.get(type_name)
    if job_type is None:
        raise Invalid(
            f"Unknown job type {type_name!r}; known: {', '.join(sorted(JOB_TYPES))}",
            errors=[{"field": "type", "message": "unknown job type", "source": "body"}],
        )
    if job_type.admin_only and not principal.is_admin:
        raise Forbidden(f"Only admins may start {type_name} jobs", code="forbidden")
    try:
        parsed = parse_input(job_type, raw_input)
    except msgspec.ValidationError as exc:
        field, message = locate(str(exc), "input")
        raise Invalid(
            f"The input does not fit {type_name}: {message}",
            errors=[{"field": field, "message": message, "source": "body"}],
        ) from None
    check = input_checks.get(type(parsed))
    if check is not None:
        check(parsed)
    return job_type


def reindex_check(collections: CollectionRegistry) -> InputCheck:
    """reindex_collection's check: the collection exists and embeds."""

    def check(parsed: ReindexCollection) -> None:
        found = collections.get(parsed.collection)
        if found is None or found.embed is None:
            message = "is not a collection that embeds"
            raise Invalid(
                f"{parsed.collection!r} {message}",
                errors=[{"field": "input.collection", "message": message, "source": "body"}],
            )

    return check


class JobService:
    def __init__(
        self,
        db: AsyncSession,
        celery: Celery,
        settings: Settings,
        clock: Clock,
        input_checks: InputChecks,
    ) -> None:
        self.db = db
        self.celery = celery
        self.settings = settings
        self.clock = clock
        self.input_checks = input_checks

    def run_at(self, data: NewJob) -> datetime | None:
        """When a delayed job may start; refuses a delay the broker cannot keep.

        Celery hands an ETA task to a worker at once and the worker holds it unacknowledged
        until it is due; Redis gives an unacknowledged task to another worker after the
        visibility timeout, again and again, so a longer delay would start the job repeatedly.
        """
        if data.countdown is not None and data.run_at is not None:
            message = "give countdown or run_at, not both"
            raise Invalid(
                message,
                errors=[{"field": "run_at", "message": message, "source": "body"}],
            )
        now = self.clock.now()
        if data.countdown is not None:
            field, delay = "countdown", data.countdown
        elif data.run_at is not None:
            field, delay = "run_at", (data.run_at - now).total_seconds()
        else:
            return None
        limit = self.settings.celery_visibility_timeout_seconds
        if delay >= limit:
            message = (
                f"at most {limit}s ahead (CELERY_VISIBILITY_TIMEOUT_SECONDS); use a schedule"
                " for later runs"
            )
            raise Invalid(
                f"The delay is {delay:.0f}s; {message}",
                errors=[{"field": field, "message": message, "source": "body"}],
            )
        return now + timedelta(seconds=delay) if delay > 0 else None

    async def submit(self, principal: Principal, data: NewJob) -> Job:
        check_job(principal, data.type, data.input, self.input_checks)
        run_at = self.run_at(data)
        await lock_subject(self.db, "jobs", principal.user_id)  # concurrent submits take turns
        active = await self.db.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.owner == principal.user_id, Job.status.in_(ACTIVE_STATUSES))
        )
        if int(active or 0) >= self.settings.jobs_max_active_per_user:
            raise TooMany(
                f"You have {active} jobs queued or running; wait for some to finish",
                code="too_many_jobs",
                headers={"Retry-After": "10"},
            )
        job = Job(owner=principal.user_id, org=principal.org_id, type=data.type, run_at=run_at)
        self.db.add(job)
        await self.db.flush()
        self.db.add(JobInput(job_id=job.id, input=data.input))
        after_commit(self.db, partial(enqueue, self.celery, job.id, job.type, run_at))
        return job

    async def _mine(self, principal: Principal, job_id: UUID, *, lock: bool = False) -> Job:
        statement = select(Job).where(Job.id == job_id)
        if lock:
            statement = statement.with_for_update()
        job = await self.db.scalar(statement)
        if job is None or (job.owner != principal.user_id and not principal.is_admin):
            raise NotFound("No such job", code="not_found")
        return job

    async def get(self, principal: Principal, job_id: UUID) -> Job:
        return await self._mine(principal, job_id)

    async def list_mine(
        self, principal: Principal, status: str | None, job_type: str | None, paging: Paging
    ) -> Page[Job]:
        statement = select(Job).where(Job.owner == principal.user_id)
        if status:
            statement = statement.where(Job.status == status)
        if job_type:
            statement = statement.where(Job.type == job_type)
        rows = await self.db.scalars(
            by_key(statement, paging, Job.created_at, Job.id, descending=True)
        )
        return page_by_key(rows.all(), paging, lambda job: (job.created_at, job.id))

    async def cancel(self, principal: Principal, job_id: UUID) -> Job:
        """A queued job never starts; a running one stops at its next progress report."""
        job = await self._mine(principal, job_id, lock=True)
        if job.status == "queued":
            job.status, job.finished_at = "cancelled", self.clock.now()
        elif job.status == "running":
            job.cancel_requested = True
        else:
            raise Conflict(f"The job already {job.status}", code="job_finished")
        await self.db.flush()
        return job
