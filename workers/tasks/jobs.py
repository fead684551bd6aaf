"""jobs.run: claim a job row, run its type's function, record the outcome.

The job row is the truth. A worker killed mid-job leaves the row `running` and the message
unacknowledged (acks_late), so the job runs again elsewhere; job functions make their effects
idempotent (import_records derives each record's id from the job and row number), so a re-run
lands each effect once. A job that keeps failing stops after its type's retries, marked failed.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import psycopg
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from psycopg.types.json import Jsonb

from backend.config import Settings
from backend.jobs.recovery import claim_lost_jobs, retry_backoff
from backend.jobs.schedules import FIRE_SCHEDULES_TASK, fire_due_schedules
from backend.jobs.service import RUN_JOB_TASK, send_job
from backend.jobs.types import (
    JOB_TYPES,
    ImportRecords,
    ReindexCollection,
    Sleep,
    SummarizeRecord,
    parse_input,
)
from workers.celery_app import JOBS_QUEUE, LitebaseCelery, LitebaseTask
from workers.database import connection, worker_engine

REQUEUE_JOBS_TASK = "jobs.requeue"
MAX_REPORTED_ERRORS = 100


class Cancelled(Exception):
    """The owner asked the job to stop."""


class JobFailed(Exception):
    """The job cannot succeed (refused, not found): it fails now, without its retries."""


class JobContext:
    """What a job function gets: its input, its owner (and their role, and whether they are
    an anonymous user, when the job was claimed; None if they no longer exist), and a way to
    report progress."""

    def __init__(
        self,
        conn: psycopg.Connection,
        settings: Settings,
        job_id: str,
        owner: str,
        org: str | None,
        role: str | None,
        anonymous: bool | None = None,
    ) -> None:
        assert settings.database_url is not None
        self.conn = conn
        self.settings = settings
        self.database_url = settings.database_url
        self.job_id = job_id
        self.owner = owner
        self.org = org
        self.role = role
        self.anonymous = anonymous

    def progress(self, fraction: float) -> None:
        """Record progress (0..1); raises Cancelled if the owner cancelled meanwhile."""
        row = self.conn.execute(
            "UPDATE jobs SET progress = %s, updated_at = now() WHERE id = %s AND status = 'running'"
            " RETURNING cancel_requested",
            (max(0.0, min(1.0, fraction)), self.job_id),
        ).fetchone()
        if row is None or row[0]:
            raise Cancelled


def _sleep(ctx: JobContext, job_input: Sleep) -> dict[str, Any]:
    import time

    for step in range(job_input.steps):
        time.sleep(job_input.seconds / job_input.steps)
        ctx.progress((step + 1) / job_input.steps)
    return {"slept": job_input.seconds}


def _rows(job_input: ImportRecords) -> list[dict[str, Any]]:
    if job_input.format == "csv":
        return list(csv.DictReader(io.StringIO(job_input.data)))
    return [json.loads(line) for line in job_input.data.splitlines() if line.strip()]


def _import_records(ctx: JobContext, job_input: ImportRecords) -> dict[str, Any]:
    """Insert rows under the owner's create rule; report each refused row, insert each once."""
    from sqlalchemy import select
    from sqlalchemy.dialects.postgresql import insert

    from backend.collections.compile import AuthContext
    from backend.collections.relations import relation_checks, unviewable_relations
    from backend.collections.rules import compile_rules
    from backend.collections.schemas import provided, record_types
    from backend.collections.spec import CollectionRegistry

    registry = CollectionRegistry.discover()
    collection = registry.get(job_input.collection)
    if collection is None:
        raise ValueError(f"no collection named {job_input.collection!r}")
    every_rule = compile_rules(registry, ctx.settings)  # relations read their targets' rules
    rules = every_rule[collection.name]
    create_type = record_types(collection).create
    auth = AuthContext(
        id=uuid.UUID(ctx.owner),
        role=ctx.role,
        org=uuid.UUID(ctx.org) if ctx.org else None,
        anonymous=ctx.anonymous,
    )
    rows = _rows(job_input)
    errors: list[dict[str, Any]] = []
    inserted = 0
    table = collection.table
    is_admin = ctx.role == "admin"
    with worker_engine(ctx.settings).connect() as sql:
        for index, raw in enumerate(rows):
            try:
                values = provided(msgspec.convert(raw, create_type, strict=False))
            except msgspec.ValidationError as exc:
                if len(errors) < MAX_REPORTED_ERRORS:
                    errors.append({"row": index, "message": str(exc)})
                continue
            # Where the row's relations point must be the owner's to see (admins: anywhere).
            checks = {}
            if not is_admin:
                checks = relation_checks(collection, every_rule, values, auth, auth.org, _now())
            # The same job and row always give the same id: a re-run inserts nothing twice.
            record_id = uuid.uuid5(uuid.UUID(ctx.job_id), str(index))
            values.update(id=record_id, owner=auth.id, org=auth.org)
            with sql.begin() as transaction:
                passed = sql.execute(select(*checks.values())).one() if checks else ()
                refused = unviewable_relations(checks, passed)
                if refused is not None:
                    transaction.rollback()
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append({"row": index, "message": refused.detail})
                    continue
                # On a re-run the row may be there already: it counts once, as this job's.
                sql.execute(insert(table).values(**values).on_conflict_do_nothing())
                rule = rules.clause("create", auth, _now())  # an admin-only rule admits none
                admitted = (
                    is_admin
                    or sql.execute(select(table.c.id).where(table.c.id == record_id, rule)).first()
                    is not None
                )
                if not admitted:
                    transaction.rollback()
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append({"row": index, "message": "refused by the create rule"})
                    continue
                inserted += 1
            if index % 100 == 99:
                ctx.progress((index + 1) / len(rows))
    return {"rows": len(rows), "inserted": inserted, "errors": errors}


def _reindex_collection(ctx: JobContext, job_input: ReindexCollection) -> dict[str, Any]:
    """Embed every record again through the reindex service (what ``litebase reindex`` runs).

    Cancelling stops it between batches; what was embedded stays (a re-run reuses it)."""
    from psycopg import sql

    from backend.collections.spec import CollectionRegistry
    from backend.vectors.sync import reindex
    from workers.tasks.vectors import file_reader

    collection = CollectionRegistry.discover().get(job_input.collection)
    if collection is None or collection.embed is None:
        raise ValueError(f"no collection that embeds named {job_input.collection!r}")
    counted = ctx.conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(collection.table.name))
    ).fetchone()
    total = max(1, counted[0] if counted else 0)
    ctx.progress(0.0)
    status = reindex(
        ctx.conn,
        collection,
        ctx.settings,
        force=job_input.force,
        # The last step (activating the new version) is not done yet at the last batch.
        progress=lambda done: ctx.progress(0.99 * done / total),
        read_file=file_reader(ctx.settings),
    )
    return {
        "collection": collection.name,
        "records": counted[0] if counted else 0,
        "done": status.done,
        "failed": status.failed,
        "pending": status.pending,
    }


def _summarize_record(ctx: JobContext, job_input: SummarizeRecord) -> dict[str, Any]:
    """Read the record as the owner may view it, summarize it through the gateway as the owner
    (metered and budgeted under the prompt's name), and keep the summary as the result."""
    from backend.ai.summaries import check_summary, record_text, summarize
    from backend.collections.rules import compile_rules
    from backend.collections.spec import CollectionRegistry
    from backend.errors import DomainError, UpstreamFailed
    from backend.identity import Principal
    from workers.gateway import worker_gateway

    gateway = worker_gateway(ctx.settings)
    principal = Principal(
        user_id=uuid.UUID(ctx.owner),
        role=ctx.role or "user",
        org_id=uuid.UUID(ctx.org) if ctx.org else None,
        is_anonymous=bool(ctx.anonymous),
    )
    try:
        # Checked at submit; again here, for a schedule's job or a prompt file removed since.
        collection, fields, prompt = check_summary(
            job_input, CollectionRegistry.discover(), gateway.prompts
        )
        rules = compile_rules([collection], ctx.settings)[collection.name]
        with worker_engine(ctx.settings).connect() as sql:
            text = record_text(sql, rules, principal, job_input, fields, _now())
        ctx.progress(0.1)
        summary = gateway.call(
            lambda: summarize(gateway.runner, principal, prompt, job_input, fields, text)
        )
    except DomainError as exc:
        reason = f"{exc.code or type(exc).__name__}: {exc.detail}"
        if isinstance(exc, UpstreamFailed):  # every upstream failed: worth another attempt
            raise RuntimeError(reason) from None
        raise JobFailed(reason) from None
    return msgspec.to_builtins(summary)  # type: ignore[no-any-return]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


JOB_FUNCTIONS: dict[str, Callable[[JobContext, Any], Any]] = {
    "sleep": _sleep,
    "import_records": _import_records,
    "reindex_collection": _reindex_collection,
    "summarize_record": _summarize_record,
}


def _finish(conn: psycopg.Connection, job_id: str, status: str, **fields: Any) -> None:
    assignments = ", ".join(f"{name} = %s" for name in fields)
    conn.execute(
        # Column names are this module's own, never input.
        f"UPDATE jobs SET status = %s, finished_at = now(), updated_at = now()"  # noqa: S608
        f"{', ' + assignments if assignments else ''} WHERE id = %s",
        (status, *fields.values(), job_id),
    )


class JobTask(LitebaseTask):
    """jobs.run: when its message is dropped (it killed its worker CELERY_MAX_DELIVERIES times),
    the job is marked failed rather than left running for ever."""

    def delivery_limit_reached(self, deliveries: int, *args: Any, **kwargs: Any) -> None:
        app = self.app
        assert isinstance(app, LitebaseCelery) and app.settings.database_url
        job_id = args[0] if args else kwargs["job_id"]
        with connection(app.settings) as c:
            c.execute(
                "UPDATE jobs SET status = 'failed', error = %s, finished_at = now(),"
                " updated_at = now() WHERE id = %s AND status IN ('queued', 'running')",
                (f"its worker died {deliveries} times running it; not run again", job_id),
            )


@shared_task(name=RUN_JOB_TASK, bind=True, max_retries=None, base=JobTask)
def run_job(self: Any, job_id: str) -> str:
    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    with connection(app.settings) as conn:
        claimed = conn.execute(
            "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()),"
            " attempts = attempts + 1, updated_at = now()"
            " WHERE id = %s AND status IN ('queued', 'running') AND NOT cancel_requested"
            " RETURNING type, owner::text, org::text, attempts,"
            " (SELECT role FROM users WHERE users.id = jobs.owner),"
            " (SELECT is_anonymous FROM users WHERE users.id = jobs.owner)",
            (job_id,),
        ).fetchone()
        if claimed is None:
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now()"
                " WHERE id = %s AND status IN ('queued', 'running') AND cancel_requested",
                (job_id,),
            )
            return "not run"
        type_name, owner, org, attempts, role, anonymous = claimed
        job_type = JOB_TYPES[type_name]
        if job_type.admin_only and role != "admin":
            # Checked at submit too; this covers an owner demoted since (or a schedule's job).
            _finish(conn, job_id, "failed", error=f"only admins may run {type_name} jobs")
            return "failed"
        raw = conn.execute("SELECT input FROM job_inputs WHERE job_id = %s", (job_id,)).fetchone()
        context = JobContext(conn, app.settings, job_id, owner, org, role, anonymous)
        try:
            result = JOB_FUNCTIONS[type_name](context, parse_input(job_type, raw[0] if raw else {}))
        except Cancelled:
            _finish(conn, job_id, "cancelled")
            return "cancelled"
        except JobFailed as exc:
            _finish(conn, job_id, "failed", error=str(exc))
            return "failed"
        except SoftTimeLimitExceeded:
            _finish(conn, job_id, "failed", error=f"timed out after {job_type.timeout_seconds}s")
            return "failed"
        except Exception as exc:
            if attempts <= job_type.max_retries:
                conn.execute(
                    "UPDATE jobs SET status = 'queued', error = %s, updated_at = now()"
                    " WHERE id = %s",
                    (f"attempt {attempts}: {exc}", job_id),
                )
                raise self.retry(exc=exc, countdown=retry_backoff(attempts)) from exc
            _finish(conn, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
            return "failed"
        _finish(conn, job_id, "succeeded", result=Jsonb(result), progress=1.0, error=None)
        return "succeeded"


def _messages_in(app: LitebaseCelery, queue: str) -> int:
    """Messages waiting in a broker queue (Redis or AMQP); 0 for a queue that does not exist."""
    try:
        with app.connection_for_read() as connection:
            channel: Any = connection.default_channel
            declared = channel.queue_declare(queue=queue, passive=True)
    except Exception:  # kombu raises its transport's own "no such queue"
        return 0
    return int(declared.message_count)


@shared_task(name=REQUEUE_JOBS_TASK, bind=True)
def requeue_jobs(self: Any, after_seconds: float | None = None) -> int:
    """Send again the jobs whose message is gone (backend/jobs/recovery.py). Beat passes its
    JOBS_REQUEUE_AFTER_SECONDS; without it, the worker's own."""
    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    after = app.settings.jobs_requeue_after_seconds if after_seconds is None else after_seconds
    queues = {name: job_type.queue or JOBS_QUEUE for name, job_type in JOB_TYPES.items()}
    busy = {queue for queue in set(queues.values()) if _messages_in(app, queue)}
    waiting = [name for name, queue in queues.items() if queue in busy]
    with connection(app.settings) as conn:
        lost = claim_lost_jobs(conn, after, waiting)
    for job_id, type_name in lost:
        send_job(app, job_id, type_name)
    return len(lost)


@shared_task(name=FIRE_SCHEDULES_TASK, bind=True)
def fire_schedules(self: Any) -> int:
    """Start the jobs of the schedules that are due (beat, every JOBS_SCHEDULE_POLL_SECONDS)."""
    from datetime import UTC, datetime

    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    with connection(app.settings) as conn:
        created = fire_due_schedules(conn, datetime.now(UTC), app.settings)
        types = conn.execute(
            "SELECT id::text, type FROM jobs WHERE id = ANY(%s::uuid[])", (created,)
        ).fetchall()
    # After the commit; a job not handed on (the broker is down) is the sweeper's.
    for job_id, type_name in types:
        send_job(app, job_id, type_name)
    return len(created)
