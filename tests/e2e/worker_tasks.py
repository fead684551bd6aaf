"""Tasks and job types only the e2e stack loads (the worker with --include, the API through
tests/e2e/app.py), to prove worker behaviour end to end."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
from celery import shared_task

from backend.jobs.types import JOB_TYPES, JobType
from workers.tasks.jobs import JOB_FUNCTIONS, JobContext

EFFECTS_QUEUE = "e2e-effects"


@shared_task(name="tests.kill_worker_process")
def kill_worker_process() -> None:
    """Dies the way an out-of-memory kill does: no exception, no ack."""
    os._exit(1)


class Effect(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str
    hold_seconds: float = 0.0


class Fails(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    message: str


class Slow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    seconds: float


class Dies(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def record_effect(ctx: JobContext, job_input: Effect) -> dict[str, Any]:
    """One effect per key, however often the job runs: the key is unique (tests create
    e2e_effects and e2e_effect_runs); every run is counted, to show the re-runs happened."""
    ctx.conn.execute("INSERT INTO e2e_effect_runs (key) VALUES (%s)", (job_input.key,))
    ctx.conn.execute(
        "INSERT INTO e2e_effects (key, job_id) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
        (job_input.key, ctx.job_id),
    )
    time.sleep(job_input.hold_seconds)  # a kill here leaves the effect made, the job running
    return {"key": job_input.key}


def always_fail(ctx: JobContext, job_input: Fails) -> None:
    raise RuntimeError(job_input.message)


def take_too_long(ctx: JobContext, job_input: Slow) -> None:
    time.sleep(job_input.seconds)


def kill_the_worker(ctx: JobContext, job_input: Dies) -> None:
    os._exit(1)


for job_type, function in (
    (
        JobType("e2e_effect", Effect, timeout_seconds=5, max_retries=0, queue=EFFECTS_QUEUE),
        record_effect,
    ),
    (JobType("e2e_fails", Fails, timeout_seconds=60, max_retries=2), always_fail),
    (JobType("e2e_slow", Slow, timeout_seconds=1, max_retries=2), take_too_long),
    (JobType("e2e_dies", Dies, timeout_seconds=60, max_retries=0), kill_the_worker),
):
    JOB_TYPES[job_type.name] = job_type
    JOB_FUNCTIONS[job_type.name] = function
