"""/jobs/schedules and the claim of due schedules, with the clock in the test's hands."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID

import msgspec
import psycopg
import pytest

from backend.jobs.schedules import fire_due_schedules
from backend.lib.urls import libpq_database_url
from tests.integration.conftest import bearer, signed_in_admin

SCHEDULES = "/jobs/schedules"
SLEEP = {"type": "sleep", "input": {"seconds": 0}}
START = datetime(2026, 12, 1, 18, 22, 30, tzinfo=UTC)


@pytest.fixture
def clock(clock):
    clock._now = START
    return clock


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(
        settings,
        jobs_schedulable_types=("sleep", "reindex_collection"),
        jobs_schedule_min_interval_seconds=300,
        jobs_max_schedules_per_user=3,
    )


@pytest.fixture
async def alice(client, sign_up, make_admin) -> dict[str, str]:
    """An admin: the schedules here run sleep jobs, which only admins may start."""
    return bearer((await signed_in_admin(client, sign_up, make_admin))["access_token"])


@pytest.fixture
async def bob(sign_up) -> dict[str, str]:
    """Not an admin: someone else's schedules are not his to see."""
    return bearer((await sign_up())["access_token"])


@pytest.fixture
def conn(database_url):
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as connection:
        yield connection


async def _schedule(client, headers, cron="*/5 * * * *", **body) -> dict:
    response = await client.post(SCHEDULES, json={**SLEEP, "cron": cron, **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _jobs(conn, schedule_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT j.id::text, j.type, j.owner::text, j.status, i.input FROM jobs j"
        " JOIN job_inputs i ON i.job_id = j.id WHERE j.idempotency_key LIKE %s"
        " ORDER BY j.created_at",
        (f"schedule:{schedule_id}:%",),
    ).fetchall()


async def test_a_schedule_is_created_listed_changed_and_deleted(client, alice, bob):
    created = await _schedule(client, alice, cron="  */5  *  * * * ")
    assert created["cron"] == "*/5 * * * *" and created["enabled"] is True
    assert created["next_run_at"] == "2026-12-01T18:25:00Z"
    assert created["last_job_id"] is None
    path = f"{SCHEDULES}/{created['id']}"
    listed = (await client.get(SCHEDULES, headers=alice)).json()
    assert [s["id"] for s in listed["items"]] == [created["id"]] and listed["next_cursor"] is None
    assert (await client.get(SCHEDULES, headers=bob)).json()["items"] == []
    assert (await client.get(path, headers=bob)).status_code == 404
    assert (await client.patch(path, json={"enabled": False}, headers=bob)).status_code == 404

    changed = await client.patch(path, json={"cron": "0 3 * * *"}, headers=alice)
    assert changed.status_code == 200, changed.text
    assert changed.json()["next_run_at"] == "2026-12-02T03:00:00Z"
    paused = (await client.patch(path, json={"enabled": False}, headers=alice)).json()
    assert paused["enabled"] is False and paused["cron"] == "0 3 * * *"
    bad = await client.patch(path, json={"input": {"seconds": -1}}, headers=alice)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "input.seconds"

    assert (await client.delete(path, headers=bob)).status_code == 404
    assert (await client.delete(path, headers=alice)).status_code == 204
    assert (await client.get(path, headers=alice)).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"type": "nope"}, 422, "type"),
        ({"type": "import_records", "input": {"collection": "notes", "format": "csv", "data": ""}},
         422, "type"),  # a real type, but not in JOBS_SCHEDULABLE_TYPES
        ({"input": {"seconds": "soon"}}, 422, "input.seconds"),
        ({"type": "reindex_collection", "input": {"collection": "notes"}}, 403, None),
        ({}, 403, None),  # sleep: admins only (a user's sleep would only hold a worker)
        ({"cron": "61 * * * *"}, 422, "cron"),
        ({"cron": "* * *"}, 422, "cron"),
        ({"cron": "every day"}, 422, "cron"),
        ({"cron": "* * * * *"}, 422, "cron"),  # every minute: under the 300 s minimum
        ({"cron": "*/4 * * * *"}, 422, "cron"),
        ({"cron": "0,1 0 1 1 *"}, 422, "cron"),  # rare, but two runs a minute apart
        ({"cron": "0 0 * * *", "extra": 1}, 422, "extra"),
    ],
)  # fmt: skip
async def test_a_bad_schedule_is_refused_naming_the_field(client, alice, bob, body, status, field):
    # The admin-only types are refused to a user; the rest, to anyone.
    response = await client.post(
        SCHEDULES,
        json={**SLEEP, "cron": "*/5 * * * *", **body},
        headers=bob if status == 403 else alice,
    )
    assert response.status_code == status, response.text
    if field:
        assert response.json()["errors"][0]["field"] == field


async def test_a_user_has_at_most_the_allowed_number_of_schedules(client, alice):
    for _ in range(3):
        await _schedule(client, alice)
    refused = await client.post(SCHEDULES, json={**SLEEP, "cron": "*/5 * * * *"}, headers=alice)
    assert refused.status_code == 429


async def test_a_due_schedule_starts_one_job_and_moves_to_its_next_time(
    client, alice, conn, settings
):
    schedule = await _schedule(client, alice, input={"seconds": 1, "steps": 2})
    assert fire_due_schedules(conn, START, settings) == []  # not due yet
    due = START.replace(minute=25, second=0)
    fired = fire_due_schedules(conn, due + timedelta(seconds=3), settings)
    assert len(fired) == 1
    ((job_id, job_type, owner, status, job_input),) = _jobs(conn, schedule["id"])
    assert (job_id, job_type, status, job_input) == (
        fired[0],
        "sleep",
        "queued",
        {"seconds": 1, "steps": 2},
    )
    assert owner == (await client.get("/auth/me", headers=alice)).json()["id"]
    after = (await client.get(f"{SCHEDULES}/{schedule['id']}", headers=alice)).json()
    assert after["next_run_at"] == "2026-12-01T18:30:00Z"
    assert after["last_run_at"] == "2026-12-01T18:25:00Z" and after["last_job_id"] == job_id
    # The owner sees it among their jobs.
    assert job_id in [j["id"] for j in (await client.get("/jobs", headers=alice)).json()["items"]]
    # The same moment again: nothing new.
    assert fire_due_schedules(conn, due + timedelta(seconds=4), settings) == []


async def test_a_run_is_created_once_however_often_its_due_time_is_claimed(
    client, alice, conn, settings
):
    """The idempotency key (schedule + due time, unique in jobs) holds even when the schedule
    reads as due again for the same time (a restored backup, a lost update)."""
    schedule = await _schedule(client, alice)
    due = START.replace(minute=25, second=0)
    (first,) = fire_due_schedules(conn, due, settings)
    conn.execute("UPDATE jobs SET status = 'succeeded' WHERE id = %s", (first,))
    conn.execute("UPDATE job_schedules SET next_run_at = %s", (due,))
    assert fire_due_schedules(conn, due, settings) == []
    assert [j[0] for j in _jobs(conn, schedule["id"])] == [first]
    (row,) = conn.execute("SELECT next_run_at FROM job_schedules").fetchall()
    assert row[0] == due + timedelta(minutes=5)


async def test_beats_claiming_at_once_start_each_run_once(
    client, alice, conn, database_url, settings
):
    schedules = [await _schedule(client, alice) for _ in range(3)]
    due = START.replace(minute=25, second=0)
    url = libpq_database_url(database_url)
    barrier = threading.Barrier(6)
    fired: list[str] = []

    def beat() -> None:
        with psycopg.connect(url, autocommit=True) as own:
            barrier.wait()
            fired.extend(fire_due_schedules(own, due, settings))

    threads = [threading.Thread(target=beat) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(fired) == sorted(j[0] for s in schedules for j in _jobs(conn, s["id"]))
    assert [len(_jobs(conn, s["id"])) for s in schedules] == [1, 1, 1]


async def test_a_locked_schedule_is_skipped_not_waited_for(
    client, alice, conn, database_url, settings
):
    await _schedule(client, alice)
    due = START.replace(minute=25, second=0)
    with psycopg.connect(libpq_database_url(database_url)) as other:
        other.execute("SELECT id FROM job_schedules FOR UPDATE").fetchall()
        assert fire_due_schedules(conn, due, settings) == []
        other.rollback()
    assert len(fire_due_schedules(conn, due, settings)) == 1


@pytest.mark.parametrize("case", ["previous job still running", "paused", "no longer schedulable"])
async def test_a_schedule_that_may_not_run_skips_the_run(client, alice, conn, settings, case):
    schedule = await _schedule(client, alice)
    due = START.replace(minute=25, second=0)
    if case == "previous job still running":
        (previous,) = fire_due_schedules(conn, due, settings)
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (previous,))
        due += timedelta(minutes=5)
    elif case == "paused":
        path = f"{SCHEDULES}/{schedule['id']}"
        await client.patch(path, json={"enabled": False}, headers=alice)
    else:
        settings = msgspec.structs.replace(settings, jobs_schedulable_types=("reindex_collection",))
    before = len(_jobs(conn, schedule["id"]))
    assert fire_due_schedules(conn, due, settings) == []
    assert len(_jobs(conn, schedule["id"])) == before
    if case != "paused":  # skipped, it still moves on
        (row,) = conn.execute("SELECT next_run_at FROM job_schedules").fetchall()
        assert row[0] == due + timedelta(minutes=5)


async def test_runs_missed_while_beat_was_down_collapse_into_one(client, alice, conn, settings):
    schedule = await _schedule(client, alice)
    later = START + timedelta(hours=3, seconds=10)
    assert len(fire_due_schedules(conn, later, settings)) == 1
    assert len(_jobs(conn, schedule["id"])) == 1
    after = (await client.get(f"{SCHEDULES}/{schedule['id']}", headers=alice)).json()
    assert after["next_run_at"] == "2026-12-01T21:25:00Z"
    assert after["last_run_at"] == "2026-12-01T18:25:00Z"
    assert UUID(after["last_job_id"])
