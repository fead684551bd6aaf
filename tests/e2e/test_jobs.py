"""Jobs through a real worker: submit, watch (HTTP and job:<id>), delay, cancel, import.

Faults (killed workers, failing jobs, Redis restarts) are in test_job_faults.py."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from datetime import datetime

import pytest
import redis
import websockets

from tests.e2e.conftest import job_reaching, signed_up


@pytest.fixture
async def api(stack):
    """An admin's client: most jobs here are sleep jobs, which only admins may start."""
    client = await signed_up(stack, admin=True)
    yield client
    await client.aclose()


async def test_a_job_runs_and_its_progress_is_pushed_live(stack, api):
    submitted = await api.post("/jobs", json={"type": "sleep", "input": {"seconds": 1, "steps": 4}})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["status"] in ("queued", "running")
    url = stack.base_url.replace("http", "ws") + "/realtime"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": api.tokens["access_token"]}))
        await socket.recv()
        await socket.send(
            json.dumps({"type": "subscribe", "id": "j", "channel": f"job:{job['id']}"})
        )
        frames = []
        while not frames or frames[-1]["status"] != "succeeded":
            frame = json.loads(await asyncio.wait_for(socket.recv(), 20))
            if frame["type"] == "job":
                frames.append(frame)
    assert frames[-1] == {
        "type": "job", "job_id": job["id"], "status": "succeeded", "progress": 1.0,
        "result": {"slept": 1.0}, "error": None,
    }  # fmt: skip
    assert any(0 < f["progress"] < 1 for f in frames)
    done = (await api.get(f"/jobs/{job['id']}")).json()
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["finished_at"]
    succeeded = (await api.get("/jobs", params={"status": "succeeded"})).json()["items"]
    assert [j["id"] for j in succeeded] == [job["id"]]


async def test_a_delayed_job_starts_when_it_is_due(api):
    body = {"type": "sleep", "input": {"seconds": 0}, "countdown": 1.5}
    job = (await api.post("/jobs", json=body)).json()
    assert job["status"] == "queued" and job["run_at"]
    done = await job_reaching(api, job["id"], {"succeeded", "failed"}, within=20)
    assert done["status"] == "succeeded"
    started, due = (datetime.fromisoformat(t) for t in (done["started_at"], job["run_at"]))
    assert started >= due


async def test_someone_elses_job_is_hidden(stack, api):
    job = (await api.post("/jobs", json={"type": "sleep", "input": {"seconds": 0}})).json()
    async with aclosing(await signed_up(stack)) as other:
        hidden = await other.get(f"/jobs/{job['id']}")
    assert hidden.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "nope", "input": {}}, "type"),
        ({"type": "sleep", "input": {}}, "input.seconds"),
        ({"type": "sleep", "input": {"seconds": -1}}, "input.seconds"),
        (
            {
                "type": "import_records",
                "input": {"collection": "notes", "format": "xml", "data": ""},
            },
            "input.format",
        ),
    ],
)
async def test_unknown_types_and_bad_input_are_422(api, body, field):
    response = await api.post("/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


async def test_cancel_a_running_job_and_a_finished_one(api):
    job = (
        await api.post("/jobs", json={"type": "sleep", "input": {"seconds": 30, "steps": 300}})
    ).json()
    await job_reaching(api, job["id"], {"running"})
    assert (await api.post(f"/jobs/{job['id']}/cancel")).status_code == 202
    cancelled = await job_reaching(api, job["id"], {"cancelled"}, within=10)
    assert cancelled["progress"] < 1
    assert (await api.post(f"/jobs/{job['id']}/cancel")).status_code == 409


async def test_import_records_reports_bad_rows_and_inserts_the_rest(stack):
    data = "title,public\nfirst,true\nsecond,false\n" + "x" * 300 + ",true\n"
    async with aclosing(await signed_up(stack)) as user:  # not an admin: sees only their notes
        job = (
            await user.post(
                "/jobs",
                json={
                    "type": "import_records",
                    "input": {"collection": "notes", "format": "csv", "data": data},
                },
            )
        ).json()
        done = await job_reaching(user, job["id"], {"succeeded", "failed"})
        assert done["status"] == "succeeded", done
        assert done["result"]["rows"] == 3 and done["result"]["inserted"] == 2
        assert [e["row"] for e in done["result"]["errors"]] == [2]
        listed = (await user.get("/collections/notes/records")).json()["items"]
    assert {n["title"] for n in listed} == {"first", "second"}


async def test_the_per_user_limit_on_active_jobs(api, stack):
    limit = 10
    started = [
        await api.post("/jobs", json={"type": "sleep", "input": {"seconds": 30, "steps": 300}})
        for _ in range(limit)
    ]
    assert all(r.status_code == 202 for r in started)
    refused = await api.post("/jobs", json={"type": "sleep", "input": {"seconds": 0}})
    assert refused.status_code == 429
    for response in started:
        await api.post(f"/jobs/{response.json()['id']}/cancel")
    for response in started:
        await job_reaching(api, response.json()["id"], {"cancelled"}, within=40)


async def test_a_job_leaves_nothing_in_the_celery_result_backend(stack):
    """Its outcome is in the jobs table; Celery's result backend stores no copy (nor the
    STARTED state) that nothing would read."""
    store = redis.Redis.from_url(stack.redis_url)
    before = set(store.scan_iter("celery-task-meta-*"))
    async with aclosing(await signed_up(stack)) as user:
        job = await user.post(
            "/jobs",
            json={
                "type": "import_records",
                "input": {"collection": "notes", "format": "csv", "data": "title\nquiet"},
            },
        )
        assert job.status_code == 202, job.text
        done = await job_reaching(user, job.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded"
    assert set(store.scan_iter("celery-task-meta-*")) == before
