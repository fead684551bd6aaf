"""Which jobs the sweeper takes for lost (their message gone), from nothing but their rows."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from backend.jobs.recovery import claim_lost_jobs
from backend.lib.urls import libpq_database_url

AFTER = 60  # JOBS_REQUEUE_AFTER_SECONDS


@pytest.fixture
async def owner(sign_up) -> str:
    return str((await sign_up())["user"]["id"])


@pytest.fixture
def conn(database_url):
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as connection:
        yield connection


# (status, attempts, seconds since the row moved, run_at from now, type) → taken for lost?
CASES = [
    ("queued", 0, 30, None, "sleep", False),  # waiting its turn
    ("queued", 0, 61, None, "sleep", True),  # never handed on, or its message is gone
    ("queued", 1, 100, None, "sleep", False),  # its retry may still be waiting out the backoff
    ("queued", 1, 121, None, "sleep", True),
    ("queued", 0, 600, 10, "sleep", False),  # delayed: not due yet
    ("queued", 0, 600, -61, "sleep", True),  # due a minute ago
    ("running", 1, 1000, None, "sleep", False),  # within its type's timeout (3600 s)
    ("running", 1, 3661, None, "sleep", True),  # past it: no worker has it
    ("running", 1, 1900, None, "import_records", True),  # timeout 1800 s
    ("succeeded", 1, 10_000, None, "sleep", False),
    ("failed", 4, 10_000, None, "sleep", False),
    ("cancelled", 0, 10_000, None, "sleep", False),
]


async def test_a_job_is_taken_for_lost_when_no_live_job_would_be_that_still(conn, owner):
    expected = []
    for status, attempts, idle, run_at, type_name, lost in CASES:
        job_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO jobs (id, owner, type, status, attempts, run_at, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s,"
            " now() + make_interval(secs => %s), now() - make_interval(secs => %s),"
            " now() - make_interval(secs => %s))",
            (job_id, owner, type_name, status, attempts, run_at, idle, idle),
        )
        if lost:
            expected.append((job_id, type_name))
    # While sleep's queue still holds messages, its jobs are taken to be in line.
    behind = claim_lost_jobs(conn, AFTER, waiting_types={"sleep"})
    assert behind == [job for job in expected if job[1] != "sleep"]
    assert sorted(claim_lost_jobs(conn, AFTER)) == sorted(j for j in expected if j[1] == "sleep")
    # Sent again: the next sweep leaves them for another JOBS_REQUEUE_AFTER_SECONDS.
    assert claim_lost_jobs(conn, AFTER) == []
