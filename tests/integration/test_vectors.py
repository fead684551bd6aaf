"""Vector search against real Postgres + pgvector: sync, search modes, rules, plans, versions.

The worker's code runs here in-process (``embed_all``) so each step is explicit; the e2e suite
runs the same through the relay and a real Celery worker.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.lib.urls import libpq_database_url
from backend.vectors.chunking import source_hash_sql, source_text, text_hash
from backend.vectors.embedders import HashEmbedder, vector_literal
from backend.vectors.failures import claim_due_failures, record_failures
from backend.vectors.sync import PHASES, embed_records, maybe_activate
from backend.vectors.versions import ensure_versions
from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"
SEARCH = "/collections/notes/search"
STATUS = "/collections/notes/embedding-status"


def _notes():
    collection = CollectionRegistry.discover().get("notes")
    assert collection is not None
    return collection


def _embed_all_sync(settings: Settings, ids: list[str] | None = None) -> dict[str, int]:
    collection = _notes()
    fresh: dict[str, int] = {}
    with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as conn:
        live, _ = ensure_versions(conn, collection, settings)
        if ids is None:
            ids = [r[0] for r in conn.execute("SELECT id::text FROM notes").fetchall()]
        for version in live:
            timings: dict[str, float] = {}
            fresh[version.state] = embed_records(
                conn, collection, version, ids, settings, timings=timings
            )
            # Every step is timed, embedding only when something was new to the provider.
            steps = set(PHASES) - ({"embed"} if not fresh[version.state] else set())
            assert set(timings) == steps and min(timings.values()) >= 0
        maybe_activate(conn, collection, settings)
    return fresh


async def embed_all(settings: Settings, ids: list[str] | None = None) -> dict[str, int]:
    """What vectors.embed does for these records (all of them by default), for every version."""
    return await asyncio.to_thread(_embed_all_sync, settings, ids)


@pytest.fixture
async def alice(sign_up):
    return bearer((await sign_up())["access_token"])


@pytest.fixture
async def bob(sign_up):
    return bearer((await sign_up())["access_token"])


async def _note(client, headers, **data):
    response = await client.post(NOTES, json={"title": "a note", **data}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def _search(client, headers, **body):
    response = await client.post(SEARCH, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_notes_are_found_by_vector_text_and_hybrid(client, alice, settings):
    kinds = ["apple orchard harvest", "volcano eruption lava", "violin concerto orchestra"]
    made = [await _note(client, alice, title=f"note {i}", body=kinds[i % 3]) for i in range(9)]
    await embed_all(settings)
    for mode in ("vector", "text", "hybrid"):
        items = await _search(client, alice, query="lava from the volcano", mode=mode, k=3)
        assert len(items) == 3, mode
        wanted = {n["id"] for n in made if "volcano" in n["body"]}
        assert {item["record"]["id"] for item in items} == wanted, mode
        assert all("volcano" in item["chunk"]["content"] for item in items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
    # One item per record, typed like a read of the record.
    items = await _search(client, alice, query="note", mode="vector", k=9)
    assert len({item["record"]["id"] for item in items}) == len(items) == 9
    assert set(items[0]["record"]) >= {"id", "title", "body", "owner", "created_at"}


async def test_long_records_are_chunked_and_found_by_any_part(client, alice, settings):
    paragraphs = [f"Paragraph {i} talks about topic{i} in some detail." for i in range(60)]
    note = await _note(client, alice, title="long", body="\n\n".join(paragraphs))
    await _note(client, alice, title="short", body="nothing relevant here")
    await embed_all(settings)
    items = await _search(client, alice, query="topic42", mode="text", k=5)
    assert [item["record"]["id"] for item in items] == [note["id"]]
    assert "topic42" in items[0]["chunk"]["content"] and items[0]["chunk"]["index"] > 0
    chunks = await asyncio.to_thread(_count_chunks, settings, note["id"])
    assert chunks > 1


def _count_chunks(settings: Settings, record_id: str) -> int:
    with psycopg.connect(libpq_database_url(settings.database_url or "")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM notes_chunks WHERE record_id = %s", (record_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])


async def test_edits_reembed_deletes_disappear_unchanged_is_not_reembedded(client, alice, settings):
    note = await _note(client, alice, title="Kestrel", body="a small falcon hovering")
    assert (await embed_all(settings))["active"] == 1
    assert (await embed_all(settings))["active"] == 0  # same text, same model: nothing new
    assert await _search(client, alice, query="falcon", mode="text")
    changed = await client.patch(
        f"{NOTES}/{note['id']}", json={"body": "a red sports car"}, headers=alice
    )
    assert changed.status_code == 200
    await embed_all(settings)
    assert await _search(client, alice, query="falcon", mode="text") == []
    assert await _search(client, alice, query="falcon", mode="vector", min_score=0.3) == []
    assert [i["record"]["id"] for i in await _search(client, alice, query="sports car")] == [
        note["id"]
    ]
    # A field outside the embedded ones changes: nothing to embed again.
    await client.patch(f"{NOTES}/{note['id']}", json={"public": True}, headers=alice)
    assert (await embed_all(settings))["active"] == 0
    await client.delete(f"{NOTES}/{note['id']}", headers=alice)
    assert await _search(client, alice, query="sports car") == []
    assert await embed_all(settings, [note["id"]]) == {"active": 0}  # a redelivery: no error
    assert await asyncio.to_thread(_count_chunks, settings, note["id"]) == 0


async def test_private_notes_never_appear_for_others_in_any_mode(client, alice, bob, settings):
    secret = await _note(client, alice, title="secret plan", body="the treasure is buried here")
    shared = await _note(
        client, alice, title="public plan", body="the treasure map is public", public=True
    )
    own = await _note(client, bob, title="bob's", body="bob looks for treasure")
    await embed_all(settings)
    for mode in ("vector", "text", "hybrid"):
        found = {i["record"]["id"] for i in await _search(client, bob, query="treasure", mode=mode)}
        assert found == {shared["id"], own["id"]}, mode
        mine = {
            i["record"]["id"] for i in await _search(client, alice, query="treasure", mode=mode)
        }
        assert secret["id"] in mine and own["id"] not in mine
    anonymous = await client.post(SEARCH, json={"query": "treasure"})
    assert {i["record"]["id"] for i in anonymous.json()["items"]} == {shared["id"]}
    # A client filter narrows further; it never widens.
    found = await _search(client, bob, query="treasure", filter="public = false || public = true")
    assert {i["record"]["id"] for i in found} == {shared["id"], own["id"]}


async def test_search_input_errors_name_the_field(client, alice, settings):
    cases = [
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": settings.vector_search_max_k + 1}, "k"),
        ({"query": "x", "mode": "magic"}, "mode"),
        ({"query": "   "}, "query"),
        ({"query": "x", "filter": "nope = 1"}, "filter"),
        ({"query": "x", "filter": "(" * 1000}, "filter"),
        ({"query": "x", "colour": "red"}, "colour"),
        ({}, "query"),
    ]
    for body, field in cases:
        response = await client.post(SEARCH, json=body, headers=alice)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["errors"][0]["field"] == field, (body, response.json())


async def test_embedding_status_counts_and_is_for_admins(client, alice, admin, settings):
    for i in range(3):
        await _note(client, alice, title=f"n{i}", body=f"text {i}")
    before = (await client.get(STATUS, headers=admin)).json()
    assert (before["pending"], before["done"], before["failed"]) == (3, 0, 0)
    assert before["model"] == "hash:hash-v1@384" and before["building"] is None
    await embed_all(settings)
    after = (await client.get(STATUS, headers=admin)).json()
    assert (after["pending"], after["done"], after["failed"]) == (3 - 3, 3, 0)
    assert (await client.get(STATUS, headers=alice)).status_code == 403
    assert (await client.get(STATUS)).status_code == 401


async def test_failures_are_recorded_until_the_record_changes(client, alice, settings, sql):
    note = await _note(client, alice, title="doomed", body="the provider refuses this")

    def fail() -> None:
        collection = _notes()
        with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as c:
            live, _ = ensure_versions(c, collection, settings)
            record_failures(
                c, collection, live[0], [note["id"]], "the provider answered 429", 3, settings
            )

    await asyncio.to_thread(fail)
    rows = sql("SELECT error, attempts FROM embedding_failures WHERE record_id = %s", note["id"])
    assert rows == [("the provider answered 429", 3)]
    counts = sql("SELECT status FROM embedding_records WHERE record_id = %s", note["id"])
    assert counts == [("failed",)]
    await client.patch(f"{NOTES}/{note['id']}", json={"body": "try again"}, headers=alice)
    await embed_all(settings)
    assert sql("SELECT status FROM embedding_records WHERE record_id = %s", note["id"]) == [
        ("done",)
    ]


def _fail(settings: Settings, ids: list[str], error: str = "the provider answered 503") -> None:
    """What vectors.embed records once its retries are spent, for every live version."""
    collection = _notes()
    with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as c:
        live, _ = ensure_versions(c, collection, settings)
        for version in live:
            record_failures(c, collection, version, ids, error, 3, settings)


def _claim(settings: Settings, collections: tuple[str, ...] = ("notes",)) -> dict[str, list[str]]:
    with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as c:
        return claim_due_failures(c, collections, settings)


def _retry_state(sql, record_id: str) -> tuple[str, int, float | None]:
    """(status, retries, seconds until retry_at) of a record's embedding."""
    ((status, retries, wait),) = sql(
        "SELECT status, retries, extract(epoch FROM retry_at - now())::float"
        " FROM embedding_records WHERE record_id = %s",
        record_id,
    )
    return status, retries, wait


def _due_now(sql, *record_ids: str) -> None:
    """Let the backoff of these records pass."""
    sql(
        "UPDATE embedding_records SET retry_at = now() - interval '1 second'"
        " WHERE record_id = ANY(%s::uuid[])",
        list(record_ids),
    )


async def test_the_sweep_claims_failures_whose_backoff_is_due_a_bounded_number_of_times(
    client, alice, admin, settings, sql
):
    settings = msgspec.structs.replace(
        settings,
        embedding_sweep_backoff_seconds=60.0,
        embedding_sweep_backoff_max_seconds=200.0,
        embedding_sweep_max_retries=3,
    )
    ok, flaky, other = [(await _note(client, alice, title=f"n{i}"))["id"] for i in range(3)]
    await embed_all(settings, [ok])
    await asyncio.to_thread(_fail, settings, [flaky, other])
    status, retries, wait = _retry_state(sql, flaky)
    assert (status, retries) == ("failed", 0) and 55 < wait <= 60  # the first backoff
    assert await asyncio.to_thread(_claim, settings) == {}  # not due yet

    _due_now(sql, flaky)
    assert await asyncio.to_thread(_claim, settings) == {"notes": [flaky]}
    status, retries, wait = _retry_state(sql, flaky)
    assert (status, retries) == ("failed", 1) and 115 < wait <= 120  # claimed: the next backoff
    assert await asyncio.to_thread(_claim, settings) == {}  # claimed once
    # The sent-again task fails too: counted from the failure, with the doubled wait.
    await asyncio.to_thread(_fail, settings, [flaky])
    status, retries, wait = _retry_state(sql, flaky)
    assert (status, retries) == ("failed", 1) and 115 < wait <= 120
    # Up to the bound; the wait stops growing at its maximum.
    for expected in (2, 3):
        _due_now(sql, flaky)
        assert await asyncio.to_thread(_claim, settings) == {"notes": [flaky]}
        assert _retry_state(sql, flaky)[1] == expected
    assert 195 < _retry_state(sql, flaky)[2] <= 200
    _due_now(sql, flaky)
    assert await asyncio.to_thread(_claim, settings) == {}  # 3 retries: it stays failed
    # Done records, other collections and the batch bound.
    _due_now(sql, ok, other)
    assert await asyncio.to_thread(_claim, settings, ("messages",)) == {}
    one = msgspec.structs.replace(settings, embedding_sweep_batch=1)
    assert await asyncio.to_thread(_claim, one) == {"notes": [other]}

    # A change of text starts the count again.
    await client.patch(f"{NOTES}/{flaky}", json={"body": "new text"}, headers=alice)
    await asyncio.to_thread(_fail, settings, [flaky])
    status, retries, wait = _retry_state(sql, flaky)
    assert (status, retries) == ("failed", 0) and 55 < wait <= 60
    counts = (await client.get(STATUS, headers=admin)).json()
    assert (counts["pending"], counts["done"], counts["failed"]) == (0, 1, 2)
    # Embedded at last: done, and nothing left for the sweep.
    await embed_all(settings, [flaky, other])
    assert _retry_state(sql, flaky) == ("done", 0, None)
    counts = (await client.get(STATUS, headers=admin)).json()
    assert (counts["pending"], counts["done"], counts["failed"]) == (0, 3, 0)
    _due_now(sql, ok, flaky, other)
    assert await asyncio.to_thread(_claim, settings) == {}


async def test_two_sweeps_at_once_claim_a_failure_once(client, alice, settings, sql):
    record = (await _note(client, alice, title="contested"))["id"]
    await asyncio.to_thread(_fail, settings, [record])
    _due_now(sql, record)

    def race() -> tuple[dict, dict]:
        url = libpq_database_url(settings.database_url or "")
        with psycopg.connect(url) as first, psycopg.connect(url, autocommit=True) as second:
            mine = claim_due_failures(first, ["notes"], settings)  # not committed yet
            theirs = claim_due_failures(second, ["notes"], settings)  # skips the locked row
            first.commit()
        return mine, theirs

    assert await asyncio.to_thread(race) == ({"notes": [record]}, {})
    assert await asyncio.to_thread(_claim, settings) == {}


async def test_changing_the_model_reembeds_in_place_while_search_serves_the_old(
    client, alice, settings, clock
):
    for i in range(5):
        await _note(client, alice, title=f"n{i}", body=f"granite basalt quartz {i}")
    await embed_all(settings)
    # The new version's index is built with the HNSW parameters of the settings it came from.
    bigger = msgspec.structs.replace(
        settings, embedding_dimensions=256, vector_hnsw_m=8, vector_hnsw_ef_construction=40
    )
    collection = _notes()

    def start_building() -> list[str]:
        with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as c:
            live, started = ensure_versions(c, collection, bigger)
            assert started
            return [v.state for v in live]

    assert sorted(await asyncio.to_thread(start_building)) == ["active", "building"]
    # The old version still serves while the new one fills (caching the active version).
    assert len(await _search(client, alice, query="basalt", mode="vector", k=5)) == 5
    half = [n["id"] for n in (await client.get(NOTES, headers=alice)).json()["items"][:2]]
    await embed_all(bigger, half)
    # Two APIs: one reads the active version for every search, one keeps it for an hour.
    every_time = msgspec.structs.replace(settings, vector_version_cache_seconds=0.0)
    an_hour = msgspec.structs.replace(settings, vector_version_cache_seconds=3600.0)
    async with (
        AsyncTestClient(create_app(every_time, clock=clock)) as reading,
        AsyncTestClient(create_app(an_hour, clock=clock)) as keeping,
    ):
        for api in (reading, keeping):  # read now: the old version, still active
            assert len(await _search(api, alice, query="basalt", mode="vector", k=5)) == 5
        await embed_all(bigger)  # the rest: the new version is complete and swaps in
        # Both serve the new one at once; the one keeping the old version finds none of its
        # chunks (dropped with it), so it reads the active version again.
        for api in (reading, keeping):
            assert len(await _search(api, alice, query="basalt", mode="vector", k=5)) == 5
    dims = await asyncio.to_thread(_dims, settings)
    assert dims == {256}
    assert await asyncio.to_thread(_hnsw_options, settings) == [["m=8", "ef_construction=40"]]


def _hnsw_options(settings: Settings) -> list[list[str]]:
    with psycopg.connect(libpq_database_url(settings.database_url or "")) as conn:
        rows = conn.execute(
            "SELECT c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_am a ON a.oid = c.relam"
            " WHERE i.indrelid = 'notes_chunks'::regclass AND a.amname = 'hnsw'"
        ).fetchall()
        return [list(r[0]) for r in rows]


def _dims(settings: Settings) -> set[int]:
    with psycopg.connect(libpq_database_url(settings.database_url or "")) as conn:
        rows = conn.execute("SELECT DISTINCT vector_dims(embedding) FROM notes_chunks").fetchall()
        return {int(r[0]) for r in rows}


@pytest.mark.parametrize(
    ("every", "exact_max_rows", "plan"),
    [(100, 10_000, "exact"), (10, 0, "hnsw")],
    ids=["1%-exact-over-the-filtered-rows", "10%-hnsw-with-raised-ef_search"],
)
async def test_selective_filter_still_returns_k_with_high_recall(
    client, admin, settings, sql, clock, every, exact_max_rows, plan
):
    """A filter admits 1% (or 10%) of 1,000 notes: search still returns k, as exact would."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(300)]
    rows = []
    for i in range(1000):
        tag = "rare" if i % every == 0 else "common"
        rows.append((str(uuid.uuid4()), f"{tag} {i}", " ".join(rng.choices(words, k=12)), tag))
    await asyncio.to_thread(_bulk_insert, settings, rows)
    await embed_all(settings)
    sql("ANALYZE notes")
    query = " ".join(words[:12])
    tuned = msgspec.structs.replace(settings, vector_exact_scan_max_rows=exact_max_rows)
    async with AsyncTestClient(create_app(tuned, clock=clock)) as tuned_client:
        response = await tuned_client.post(
            SEARCH,
            json={"query": query, "mode": "vector", "k": 10, "filter": "title ~ 'rare'"},
            headers=admin,
        )
    items = response.json()["items"]
    assert len(items) == 10
    assert response.headers["litebase-search-plan"].split(";")[0] == plan
    assert all(item["record"]["title"].startswith("rare") for item in items)
    # Recall against exact search over the same rows (best chunk per record); a result tied
    # with the exact tenth counts as found.
    vector = HashEmbedder().embed([query])[0]
    exact = sql(
        "SELECT min(c.embedding::vector(384) <=> %s::vector) AS d"
        " FROM notes_chunks c JOIN notes n ON n.id = c.record_id"
        " WHERE n.title LIKE 'rare%%' GROUP BY record_id ORDER BY d LIMIT 10",
        vector_literal(vector),
    )
    tenth = exact[-1][0]
    found = [item for item in items if 1.0 - item["score"] <= tenth + 1e-6]
    assert len(found) / 10 >= 0.95


def _bulk_insert(settings: Settings, rows: list[tuple[str, str, str, str]]) -> None:
    with psycopg.connect(libpq_database_url(settings.database_url or "")) as conn:
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO notes (id, title, body, public, tags, created_at, updated_at)"
                " VALUES (%s, %s, %s, true, ARRAY[%s], now(), now())",
                rows,
            )
        conn.commit()


def _litebase(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LITEBASE_ENV": "test",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
    }
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_litebase_reindex_embeds_every_record_here(client, alice, settings, sql):
    for i in range(3):
        await _note(client, alice, title=f"n{i}", body=f"cormorant {i}")
    done = await asyncio.to_thread(_litebase, settings, "reindex", "notes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "notes: 3 done, 0 failed, 0 pending"
    assert len(await _search(client, alice, query="cormorant", mode="text")) == 3
    before = sql("SELECT max(updated_at) FROM embedding_records")
    forced = await asyncio.to_thread(_litebase, settings, "reindex", "notes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert sql("SELECT max(updated_at) FROM embedding_records") > before
    wrong = await asyncio.to_thread(_litebase, settings, "reindex", "projects")
    assert wrong.returncode == 2 and "is not a collection that embeds" in wrong.stderr


async def test_the_source_hash_in_sql_is_the_one_python_computes(client, alice, sql):
    note = await _note(client, alice, title="Crème brûlée ☕", body="line one\n\nline two\ttab")
    (row,) = sql(
        f"SELECT {source_hash_sql(['title', 'body'])} FROM notes r WHERE r.id = %s", note["id"]
    )
    assert row[0] == text_hash(source_text(note, ["title", "body"]))


async def test_embedding_counts_are_prometheus_gauges(alice, settings, clock):
    tuned = msgspec.structs.replace(
        settings, vector_status_refresh_seconds=0.1, metrics_token="scrape-me"
    )
    async with AsyncTestClient(create_app(tuned, clock=clock)) as tuned_client:
        for i in range(2):
            await _note(tuned_client, alice, title=f"g{i}", body="gauge")
        await embed_all(settings)
        for _ in range(50):
            scrape = {"Authorization": "Bearer scrape-me"}
            metrics = (await tuned_client.get("/metrics", headers=scrape)).text
            if 'litebase_embeddings_records{collection="notes",state="done"} 2.0' in metrics:
                break
            await asyncio.sleep(0.1)
        assert 'litebase_embeddings_records{collection="notes",state="done"} 2.0' in metrics
        assert 'litebase_embeddings_records{collection="notes",state="pending"} 0.0' in metrics
