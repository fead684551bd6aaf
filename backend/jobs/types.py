"""The job types: what each accepts, how long it may run, how often it is retried.

The work itself is in workers/jobs.py, registered under the same names. Add a type by
declaring it here (the API validates input against ``input``) and writing its function there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec


class ImportRecords(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    collection: str
    format: Literal["csv", "jsonl"]
    data: Annotated[str, msgspec.Meta(max_length=5_000_000)]


class ReindexCollection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Embed a collection's records again (``litebase reindex``, as a job)."""

    collection: str
    force: bool = False


class SummarizeRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Summarize one record through the model gateway, as its owner may view it.

    ``field`` or ``fields`` name the text fields to summarize (by default the collection's
    embedded fields, else all its text fields); ``prompt`` is a prompt of PROMPTS_DIR that takes
    a ``text`` variable."""

    collection: str
    id: UUID
    prompt: Annotated[str, msgspec.Meta(max_length=64)] = "summarize"
    field: str | None = None
    fields: Annotated[list[str], msgspec.Meta(min_length=1, max_length=50)] | None = None


class Sleep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Wait, reporting progress: for trying jobs, cancellation and the live channel."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)]
    steps: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10


# A check of a job's input beyond its schema (the collection exists, the prompt does), by
# input type; each capability contributes the checks of its own types (the app gathers them:
# backend/app.py), so jobs need not import what they run.
InputCheck = Callable[[Any], None]
InputChecks = Mapping[type, InputCheck]


@dataclass(frozen=True)
class JobType:
    name: str
    input: type[msgspec.Struct]
    timeout_seconds: int = 600
    max_retries: int = 3
    # Admin-only types act on everyone's data (a whole collection), not the caller's own.
    admin_only: bool = False
    # The Celery queue its jobs go to (None: "jobs", the user jobs pool of `litebase worker`);
    # another needs workers of its own: `litebase worker --queues <queue>`. Keeps long jobs
    # from holding up short ones.
    queue: str | None = None


JOB_TYPES: dict[str, JobType] = {
    t.name: t
    for t in (
        JobType("import_records", ImportRecords, timeout_seconds=1800, max_retries=3),
        JobType(
            "reindex_collection",
            ReindexCollection,
            timeout_seconds=3 * 3600,
            max_retries=2,
            admin_only=True,
        ),
        # Retried only when every upstream failed (502); refusals (budget, not found) fail at once.
        JobType("summarize_record", SummarizeRecord, timeout_seconds=300, max_retries=2),
        # Admin-only: it does nothing but hold a worker process, which users must not do.
        JobType("sleep", Sleep, timeout_seconds=3600, max_retries=0, admin_only=True),
    )
}


def parse_input(job_type: JobType, raw: Any) -> msgspec.Struct:
    return msgspec.convert(raw, job_type.input)
