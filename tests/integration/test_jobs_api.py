"""POST /jobs with a delay: when it may start, and the delays the broker cannot keep (422)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec
import pytest

VISIBILITY_TIMEOUT = 600


@pytest.fixture
def settings(settings):
    # Webhook retries must wait less than the visibility timeout too (Settings checks it).
    return msgspec.structs.replace(
        settings,
        celery_visibility_timeout_seconds=VISIBILITY_TIMEOUT,
        webhook_retry_backoff_max_seconds=VISIBILITY_TIMEOUT / 2,
    )


@pytest.fixture
def caller(admin) -> dict[str, str]:
    return admin  # sleep jobs are admins'


SLEEP = {"type": "sleep", "input": {"seconds": 0}}


@pytest.mark.parametrize(
    ("delay", "field"),
    [
        ({"countdown": -1}, "countdown"),
        ({"countdown": VISIBILITY_TIMEOUT}, "countdown"),
        ({"countdown": VISIBILITY_TIMEOUT * 10}, "countdown"),
        ({"run_at": "in:+600"}, "run_at"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),  # no offset: which zone?
        ({"countdown": 5, "run_at": "in:+5"}, "run_at"),
    ],
)
async def test_a_delay_the_broker_cannot_keep_is_422_naming_the_field(
    client, caller, clock, delay, field
):
    body = {
        key: (clock.now() + timedelta(seconds=float(value[4:]))).isoformat()
        if isinstance(value, str) and value.startswith("in:")
        else value
        for key, value in delay.items()
    }
    response = await client.post("/jobs", json={**SLEEP, **body}, headers=caller)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    ("delay", "ahead"),
    [
        ({"countdown": 30}, 30),
        ({"countdown": VISIBILITY_TIMEOUT - 1}, VISIBILITY_TIMEOUT - 1),
        ({"run_at": 90}, 90),
        ({"run_at": -90}, None),  # in the past: now
        ({"countdown": 0}, None),
        ({}, None),
    ],
)
async def test_a_delayed_job_is_queued_to_run_at_its_time(client, caller, clock, sql, delay, ahead):
    body = {
        key: (clock.now() + timedelta(seconds=value)).isoformat() if key == "run_at" else value
        for key, value in delay.items()
    }
    response = await client.post("/jobs", json={**SLEEP, **body}, headers=caller)
    assert response.status_code == 202, response.text
    job = response.json()
    expected = None if ahead is None else clock.now() + timedelta(seconds=ahead)
    assert job["status"] == "queued"
    stored = sql("SELECT run_at FROM jobs WHERE id = %s", UUID(job["id"]))[0][0]
    assert stored == expected
    assert (job["run_at"] is None) == (expected is None)
