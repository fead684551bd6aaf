"""Issue 18.8: job starvation. Users' jobs, mail, webhooks and embeddings shared one Celery
queue and one pool of processes, and anyone could start an hour-long `sleep` job: ten of them
held every worker process while sign-in codes waited. Now `sleep` is for admins, and
`litebase worker` runs user jobs in a pool of their own, apart from mail and embeddings."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import aclosing

import pytest

from tests.e2e.conftest import signed_up
from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("e2e")  # the e2e stack's worker

LONG = {"type": "sleep", "input": {"seconds": 60, "steps": 600}}
MAIL_WITHIN_SECONDS = 5


async def test_users_may_not_start_sleep_jobs(stack):
    async with aclosing(await signed_up(stack)) as user:
        refused = await user.post("/jobs", json=LONG)
    assert refused.status_code == 403, refused.text


async def _until_running(client, ids: list[str], count: int, within: float = 30) -> None:
    async def running() -> bool:
        states = [(await client.get(f"/jobs/{job_id}")).json()["status"] for job_id in ids]
        return states.count("running") >= count

    await eventually(running, within=within, what=f"{count} of the jobs running")


async def test_ten_long_jobs_do_not_delay_a_sign_in_code_or_an_embedding(stack, inbox):
    async with aclosing(await signed_up(stack, admin=True)) as admin:
        ids = []
        for _ in range(10):  # JOBS_MAX_ACTIVE_PER_USER
            started = await admin.post("/jobs", json=LONG)
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])
        try:
            await _until_running(admin, ids, 2)  # the jobs pool is full, eight are waiting
            async with aclosing(await signed_up(stack)) as user:
                email = user.tokens["user"]["email"]  # type: ignore[attr-defined]
                asked = time.monotonic()
                sent = await user.post("/auth/otp", json={"email": email})
                assert sent.status_code == 202, sent.text
                await asyncio.to_thread(inbox, email, "code", MAIL_WITHIN_SECONDS)
                assert time.monotonic() - asked < MAIL_WITHIN_SECONDS

                marker = f"starve{uuid.uuid4().hex[:8]}"
                note = await user.post(
                    "/collections/notes/records", json={"title": marker, "body": marker}
                )
                assert note.status_code == 201, note.text
                deadline = time.monotonic() + MAIL_WITHIN_SECONDS
                while True:
                    found = await user.post(
                        "/collections/notes/search",
                        json={"query": marker, "mode": "vector", "k": 1},
                    )
                    hits = found.json().get("items", []) if found.status_code == 200 else []
                    if any(hit["record"]["id"] == note.json()["id"] for hit in hits):
                        break
                    assert time.monotonic() < deadline, "the note was not embedded in time"
                    await asyncio.sleep(0.1)
        finally:
            for job_id in ids:
                await admin.post(f"/jobs/{job_id}/cancel")
