"""Issue 18.15: the caps on jobs, schedules and webhooks were checked by counting rows and then
inserting one, so requests sent at once all counted the same rows and all got in. Each now
takes its subject's advisory lock before counting. The requests go at once to `litebase api`
as shipped, with small caps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing

import httpx
import pytest

from tests.e2e.conftest import Stack, api_beside, signed_up, sql

pytestmark = pytest.mark.xdist_group("e2e")  # the e2e stack's database

CAP = 3
AT_ONCE = 16
IMPORT = {
    "type": "import_records",
    "input": {"collection": "notes", "format": "csv", "data": "title\nhello"},
}


@pytest.fixture(scope="module")
def capped(stack, tmp_path_factory) -> Iterator[Stack]:
    caps = {
        "JOBS_MAX_ACTIVE_PER_USER": str(CAP),
        "JOBS_MAX_SCHEDULES_PER_USER": str(CAP),
        "JOBS_SCHEDULABLE_TYPES": "import_records",
        "WEBHOOK_MAX_ENDPOINTS": str(CAP),
    }
    with api_beside(stack, caps, tmp_path_factory.mktemp("caps") / "api.log") as api:
        yield api


async def _at_once(client: httpx.AsyncClient, path: str, body: dict) -> list[int]:
    responses = await asyncio.gather(*(client.post(path, json=body) for _ in range(AT_ONCE)))
    return sorted(response.status_code for response in responses)


async def test_concurrent_job_submissions_stay_within_the_cap(capped):
    async with aclosing(await signed_up(capped)) as user:
        # Delayed, so they stay queued (the cap is on active jobs; a worker would finish these).
        responses = await asyncio.gather(
            *(user.post("/jobs", json={**IMPORT, "countdown": 600}) for _ in range(AT_ONCE))
        )
        owner = user.tokens["user"]["id"]  # type: ignore[attr-defined]
        codes = sorted(response.status_code for response in responses)
        try:
            assert codes == [202] * CAP + [429] * (AT_ONCE - CAP)
            assert sql(capped, "SELECT count(*) FROM jobs WHERE owner = %s", owner)[0][0] == CAP
        finally:
            for response in responses:
                if response.status_code == 202:
                    await user.post(f"/jobs/{response.json()['id']}/cancel")


async def test_concurrent_schedules_stay_within_the_cap(capped):
    async with aclosing(await signed_up(capped)) as user:
        codes = await _at_once(user, "/jobs/schedules", {**IMPORT, "cron": "0 3 * * *"})
        owner = user.tokens["user"]["id"]  # type: ignore[attr-defined]
    assert codes == [201] * CAP + [429] * (AT_ONCE - CAP)
    assert sql(capped, "SELECT count(*) FROM job_schedules WHERE owner = %s", owner)[0][0] == CAP


async def test_concurrent_webhooks_stay_within_the_cap(capped):
    have = sql(capped, "SELECT count(*) FROM webhook_endpoints")[0][0]
    room = max(CAP - have, 0)
    async with aclosing(await signed_up(capped, admin=True)) as admin:
        body = {"url": "https://1.1.1.1/h", "collection": "notes", "enabled": False}
        responses = await asyncio.gather(
            *(admin.post("/webhooks", json=body) for _ in range(AT_ONCE))
        )
        made = [r.json()["id"] for r in responses if r.status_code == 201]
        try:
            codes = sorted(r.status_code for r in responses)
            assert codes == [201] * room + [409] * (AT_ONCE - room)
            assert sql(capped, "SELECT count(*) FROM webhook_endpoints")[0][0] == max(have, CAP)
        finally:
            for hook_id in made:  # the stack's other tests deliver to the hooks there are
                await admin.delete(f"/webhooks/{hook_id}")
