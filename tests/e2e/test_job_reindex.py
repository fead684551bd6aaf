"""reindex_collection through the real worker: admins only, re-embeds, reports, can be stopped."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from backend.lib.urls import libpq_database_url
from tests.e2e.conftest import finished_job, job_reaching, signed_up


@pytest.fixture
async def admin(stack):
    client = await signed_up(stack, admin=True)
    yield client
    await client.aclose()


@pytest.fixture
async def member(stack):
    client = await signed_up(stack, admin=False)
    yield client
    await client.aclose()


def _stats(upstream) -> int:
    return httpx.get(upstream.base_url.removesuffix("/v1") + "/_stats").json()["inputs"]


async def test_an_admin_reindexes_a_collection_and_every_record_is_embedded_again(
    stack, admin, upstream
):
    for n in range(3):
        created = await admin.post(
            "/collections/notes/records", json={"title": f"reindex {n} {uuid.uuid4().hex}"}
        )
        assert created.status_code == 201
    before = _stats(upstream)
    submitted = await admin.post(
        "/jobs",
        json={"type": "reindex_collection", "input": {"collection": "notes", "force": True}},
    )
    assert submitted.status_code == 202, submitted.text
    done = await finished_job(admin, submitted.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0
    result = done["result"]
    assert result["collection"] == "notes" and result["failed"] == 0
    assert result["done"] == result["records"] >= 3
    # force: every chunk went to the provider again, none was reused.
    assert _stats(upstream) - before >= result["records"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"collection": "notes"}, 403, None),
        ({"collection": "nope"}, 422, "input.collection"),
    ],
)
async def test_reindex_is_for_admins_and_for_collections_that_embed(
    member, admin, body, status, field
):
    client = admin if status == 422 else member
    response = await client.post("/jobs", json={"type": "reindex_collection", "input": body})
    assert response.status_code == status, response.text
    if field:
        assert response.json()["errors"][0]["field"] == field


async def test_a_cancelled_reindex_stops_after_the_batch_it_is_in(stack, admin):
    """The test holds the embedding lock of the collection's first record, so the job waits
    inside its first batch; it is cancelled there and stops when the batch is done."""
    await admin.post("/collections/notes/records", json={"title": "held"})
    url = libpq_database_url(stack.database_url)
    with psycopg.connect(url) as holder:
        first = holder.execute("SELECT id::text FROM notes ORDER BY id LIMIT 1").fetchone()[0]
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s || %s, 0))",
            ("litebase embed notes ", first),
        )
        job = (
            await admin.post(
                "/jobs", json={"type": "reindex_collection", "input": {"collection": "notes"}}
            )
        ).json()
        await job_reaching(admin, job["id"], {"running"})
        assert (await admin.post(f"/jobs/{job['id']}/cancel")).status_code == 202
        holder.rollback()  # let the batch finish
    cancelled = await finished_job(admin, job["id"])
    assert cancelled["status"] == "cancelled", cancelled
    assert cancelled["progress"] < 1 and cancelled["result"] is None
