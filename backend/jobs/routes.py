"""HTTP routes for /jobs and /jobs/schedules."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.deps import BEARER
from backend.config import Settings
from backend.identity import Principal
from backend.jobs.schedules import ScheduleService, schedule_view
from backend.jobs.schemas import JobView, NewJob, NewSchedule, ScheduleChange, ScheduleView
from backend.jobs.service import JobService, job_view
from backend.paging import Page, Paging

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


async def provide_job_service(
    db_session: AsyncSession, state: State, settings: Settings
) -> JobService:
    return JobService(db_session, state.celery, settings, state.clock, state.job_input_checks)


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]
    security = BEARER
    dependencies = {"job_service": Provide(provide_job_service)}

    @post(
        "/", summary="Start a job; watch it on GET /jobs/{id} or realtime job:<id>", status_code=202
    )
    async def submit(self, data: NewJob, current: Principal, job_service: JobService) -> JobView:
        return job_view(await job_service.submit(current, data))

    @get("/", summary="My jobs, newest first")
    async def mine(
        self,
        current: Principal,
        job_service: JobService,
        paging: Paging,
        status: Status | None = None,
        type_: Annotated[str | None, Parameter(query="type", required=False)] = None,
    ) -> Page[JobView]:
        return (await job_service.list_mine(current, status, type_, paging)).map(job_view)

    @get("/{job_id:uuid}", summary="A job's status, progress and result")
    async def get_job(self, job_id: UUID, current: Principal, job_service: JobService) -> JobView:
        return job_view(await job_service.get(current, job_id))

    @post("/{job_id:uuid}/cancel", summary="Cancel a job", status_code=202)
    async def cancel(self, job_id: UUID, current: Principal, job_service: JobService) -> JobView:
        return job_view(await job_service.cancel(current, job_id))


async def provide_schedule_service(
    db_session: AsyncSession, state: State, settings: Settings
) -> ScheduleService:
    return ScheduleService(db_session, settings, state.clock, state.job_input_checks)


class ScheduleController(Controller):
    path = "/jobs/schedules"
    tags = ["jobs"]
    security = BEARER
    dependencies = {"schedule_service": Provide(provide_schedule_service)}

    @post("/", summary="Start a job of this type at each time the cron expression (UTC) names")
    async def create(
        self, data: NewSchedule, current: Principal, schedule_service: ScheduleService
    ) -> ScheduleView:
        return schedule_view(await schedule_service.create(current, data))

    @get("/", summary="My schedules")
    async def mine(
        self, current: Principal, schedule_service: ScheduleService, paging: Paging
    ) -> Page[ScheduleView]:
        return (await schedule_service.list_mine(current, paging)).map(schedule_view)

    @get("/{schedule_id:uuid}", summary="A schedule and when it runs next")
    async def get_schedule(
        self, schedule_id: UUID, current: Principal, schedule_service: ScheduleService
    ) -> ScheduleView:
        return schedule_view(await schedule_service.get(current, schedule_id))

    @patch("/{schedule_id:uuid}", summary="Change, pause (enabled: false) or resume a schedule")
    async def change(
        self,
        schedule_id: UUID,
        data: ScheduleChange,
        current: Principal,
        schedule_service: ScheduleService,
    ) -> ScheduleView:
        return schedule_view(await schedule_service.change(current, schedule_id, data))

    @delete("/{schedule_id:uuid}", summary="Delete a schedule (its jobs stay)")
    async def remove(
        self, schedule_id: UUID, current: Principal, schedule_service: ScheduleService
    ) -> None:
        await schedule_service.delete(current, schedule_id)
