"""A schedule fires through real processes: `litebase beat` sends jobs.fire_schedules, the
stack's worker claims the due schedule and runs its job."""

from __future__ import annotations

import asyncio
import sys
import time

import psycopg

from backend.lib.urls import libpq_database_url
from tests.e2e.conftest import _spawn, _stop, signed_up


async def _due_reindex_schedule(admin, url: str) -> dict:
    """A new schedule reindexing notes, made due now (not in up to 5 minutes)."""
    created = await admin.post(
        "/jobs/schedules",
        json={
            "type": "reindex_collection",
            "input": {"collection": "notes"},
            "cron": "*/5 * * * *",
        },
    )
    assert created.status_code == 201, created.text
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE job_schedules SET next_run_at = now() - interval '1 second' WHERE id = %s",
            (created.json()["id"],),
        )
    schedule: dict = created.json()
    return schedule


async def test_beat_starts_a_due_schedules_job_once(stack, tmp_path):
    admin = await signed_up(stack, admin=True)
    try:
        url = libpq_database_url(stack.database_url)
        schedule = await _due_reindex_schedule(admin, url)
        env = {**stack.env, "JOBS_SCHEDULE_POLL_SECONDS": "1"}
        beat = _spawn(
            [sys.executable, "-m", "backend.cli", "beat", "--schedule", str(tmp_path / "beat")],
            env,
            stack.log_dir / "beat.log",
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                current = (await admin.get(f"/jobs/schedules/{schedule['id']}")).json()
                job_id = current["last_job_id"]
                job = job_id and (await admin.get(f"/jobs/{job_id}")).json()
                if job and job["status"] in ("succeeded", "failed"):
                    break
                assert time.monotonic() < deadline, (stack.log_dir / "beat.log").read_text()
                await asyncio.sleep(0.2)
            # A second schedule made due now starts only at a later beat: once its job is
            # there, that beat (and any before it) has had its chance to start the first again.
            later = await _due_reindex_schedule(admin, url)
            deadline = time.monotonic() + 30
            path = f"/jobs/schedules/{later['id']}"
            while not (await admin.get(path)).json()["last_job_id"]:
                assert time.monotonic() < deadline, (stack.log_dir / "beat.log").read_text()
                await asyncio.sleep(0.2)
            assert (await admin.delete(path)).status_code == 204
        finally:
            _stop(beat)
        assert job["status"] == "succeeded", job
        assert job["type"] == "reindex_collection" and job["result"]["collection"] == "notes"
        with psycopg.connect(url) as conn:
            runs = conn.execute(
                "SELECT count(*) FROM jobs WHERE idempotency_key LIKE %s",
                (f"schedule:{schedule['id']}:%",),
            ).fetchone()[0]
        assert runs == 1
        assert current["next_run_at"] > schedule["created_at"]
        # Gone, so no later test's beat starts it again.
        assert (await admin.delete(f"/jobs/schedules/{schedule['id']}")).status_code == 204
    finally:
        await admin.aclose()
