"""Jobs: background jobs and their schedules."""

from __future__ import annotations

from backend.capability import Capability
from backend.collections.spec import CollectionRegistry
from backend.jobs.routes import JobController, ScheduleController
from backend.jobs.service import reindex_check
from backend.jobs.types import ReindexCollection


def jobs_capability(registry: CollectionRegistry) -> Capability:
    return Capability(
        "jobs",
        routes=[JobController, ScheduleController],
        job_input_checks={ReindexCollection: reindex_check(registry)},
    )
