"""Vector search: HNSW speed and recall, API overhead, filtered recall, and the sync pipeline.

1. Pipeline: N notes inserted in one transaction → relay → Celery worker → searchable;
   records/s ÷ the embedder's own records/s in-process (goal >= 0.8), at
   several HNSW build parameters and with no index; and the worker's code in-process, step by
   step. The ratio divides a 2-process pipeline that also writes by a 1-process embedder that
   only cuts and embeds: with the hash embedder (~0.2 ms a record) the write dominates.
   The embedder is the one the settings choose, as the worker's is: the hash one unless
   EMBEDDING_PROVIDER says otherwise (``EMBEDDING_PROVIDER=local`` with the local extra
   installed measures all-MiniLM-L6-v2, a real model).
2. 100k x 384 clustered vectors (BENCH_VECTOR_ROWS) written straight into notes_chunks, HNSW
   built with VECTOR_INDEX_BUILD_MEMORY; QPS and recall@10 at ef_search 40/100/200 vs exact.
3. API search p50 (POST /collections/notes/search, vector mode, an admin) ÷ the same SQL run
   directly with asyncpg (goal <= 1.3): both one at a time on one held connection, the API
   through a bare keep-alive HTTP/1.1 client (httpx's own figure is printed beside it), and
   the API process's CPU per search. Beside them the floor: a bare ASGI app under the same
   uvicorn that runs that SQL through asyncpg and answers its rows as JSON (no auth, no rules,
   no framework), timed the same way: what any Python HTTP layer in this stack adds here.
4. Filtered recall@10 through the API at 1% and 10% selectivity vs exact (goal >= 0.95).

Set DATABASE_URL / REDIS_URL to use real servers; otherwise embedded ones are started.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import psycopg

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from backend.collections.reads import Reader  # noqa: E402
from backend.collections.spec import CollectionRegistry  # noqa: E402
from backend.config import settings_from_env  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.lib.urls import libpq_database_url  # noqa: E402
from backend.vectors.chunking import chunk, source_text  # noqa: E402
from backend.vectors.embedders import embedder_for, vector_literal  # noqa: E402
from backend.vectors.schema import create_hnsw_index_sql, drop_hnsw_index_sql  # noqa: E402
from backend.vectors.status import status  # noqa: E402
from backend.vectors.sync import PHASES, embed_records  # noqa: E402
from backend.vectors.versions import LiveVersion, ensure_versions, hnsw_index_sql  # noqa: E402
from bench.crud import (  # noqa: E402
    cpu_seconds,
    embedded_services,
    free_port,
    loopback_round_trip_us,
    serve,
    stop,
)

ROWS = int(os.environ.get("BENCH_VECTOR_ROWS", "100000"))
PIPELINE_ROWS = int(os.environ.get("BENCH_PIPELINE_ROWS", "2000"))
PIPELINE_HNSW = os.environ.get("BENCH_PIPELINE_HNSW", "16/64,16/32,8/32")
QUERIES = int(os.environ.get("BENCH_VECTOR_QUERIES", "100"))
# Width of each point's uniform noise around its subtopic centre (subtopics spread ±0.15
# around their topic's centre, topics ±0.5). At 0.1 the top 10 of a query lie within ~0.0006
# of cosine distance of each other; 0.3 blurs the subtopics into their topics.
NOISE = float(os.environ.get("BENCH_VECTOR_NOISE", "0.1"))
API_SEARCHES = int(os.environ.get("BENCH_API_SEARCHES", "1000"))
DIMS = 384
K = 10

results: list[tuple[str, str, str]] = []

# The floor: uvicorn (as the API runs it) and a bare ASGI callable that runs one statement
# through an asyncpg pool and answers the rows as JSON. argv: dsn, port, the SQL, its
# arguments (JSON). Any HTTP API over that SQL in this stack costs at least this.
FLOOR_APP = r"""
import json, sys
import asyncpg, msgspec, uvicorn
dsn, port, sql, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
pool = None
async def app(scope, receive, send):
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
                await send({"type": "lifespan.startup.complete"})
            else:
                await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    rows = await pool.fetch(sql, *args)
    body = msgspec.json.encode({"items": [dict(row) for row in rows]})
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def report(name: str, value: str, goal: str = "") -> None:
    results.append((name, value, goal))
    print(f"  {name}: {value} {goal}", file=sys.stderr)


def main() -> None:
    with embedded_services() as (database_url, redis_url):
        run(database_url, redis_url)
    print(f"Vector search, {ROWS} x {DIMS} clustered vectors, k = {K}, {QUERIES} queries\n")
    print("| measure | value | goal |")
    print("| --- | ---: | --- |")
    for name, value, goal in results:
        print(f"| {name} | {value} | {goal} |")


def run(database_url: str, redis_url: str) -> None:
    upgrade(database_url)
    dsn = libpq_database_url(database_url)
    env = {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITEBASE_ENV": "test",
        "LOG_LEVEL": "WARNING", "RATE_LIMIT_SIGNUP_PER_MINUTE": "1000",
        "RATE_LIMIT_TOKEN_PER_MINUTE": "1000", "RELAY_POLL_SECONDS": "0.1",
    }  # fmt: skip
    # The bench's own settings read the HNSW and batch settings the worker reads (env).
    tuned = {k: v for k, v in os.environ.items() if k.startswith(("VECTOR_", "EMBEDDING_"))}
    settings = settings_from_env(tuned, env="test", database_url=database_url, redis_url=redis_url)
    notes = CollectionRegistry.discover().get("notes")
    assert notes is not None
    port = free_port()
    api = serve(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env, port,
    )  # fmt: skip
    worker = serve_worker(env)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            live, _ = ensure_versions(conn, notes, settings)
            spec = live[0].spec
            pipeline(conn, notes, spec, settings)
            populate(conn, spec.version, settings)
        asyncio.run(search_measures(dsn, spec.version))
        asyncio.run(api_measures(port, api.pid, dsn, spec, settings))
        asyncio.run(filtered_recall(dsn, spec, settings))
    finally:
        stop(api)
        stop(worker)


def serve_worker(env: dict[str, str]):  # type: ignore[no-untyped-def]
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--concurrency", "2"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def pipeline(conn: psycopg.Connection, notes, spec, settings) -> None:  # type: ignore[no-untyped-def]
    """The same PIPELINE_ROWS notes, timed three ways: the embedder alone over their
    chunks (what the issue's ratio divides by: one process, no database); the worker's own
    code (embed_records) in this process, step by step; and end to end, insert → relay →
    Celery (2 worker processes) → searchable, with the index built at each of
    BENCH_PIPELINE_HNSW's m/ef_construction pairs, and with no HNSW index at all (what
    everything but the index costs)."""
    words = [f"term{i}" for i in range(2000)]
    import random

    rng = random.Random(1)
    rows = [(f"pipeline {i}", " ".join(rng.choices(words, k=60))) for i in range(PIPELINE_ROWS)]
    embedder = embedder_for(spec.choice, settings)
    embedder.embed(["warm up: a local model loads and compiles on its first call"])
    rates = []
    for _ in range(5):  # a fraction of a second each: the median of five, on a shared machine
        started = time.perf_counter()
        texts = [
            piece
            for title, body in rows
            for piece in chunk(source_text({"title": title, "body": body}, spec.fields), 800, 100)
        ]
        embedder.embed(texts)
        rates.append(PIPELINE_ROWS / (time.perf_counter() - started))
    embedder_rate = statistics.median(rates)
    report(
        f"{spec.provider} embedder ({spec.model}) in-process (cut + embed, 1 process; median of 5)",
        f"{embedder_rate:,.0f} records/s (range {min(rates):,.0f} to {max(rates):,.0f})",
    )

    live = LiveVersion(spec, "active")
    timings: dict[str, float] = {}
    conn.execute("ALTER TABLE notes DISABLE TRIGGER notes_outbox")
    _insert(conn, rows)
    ids = [row[0] for row in conn.execute("SELECT id::text FROM notes ORDER BY id").fetchall()]
    batch = settings.embedding_batch_records
    started = time.perf_counter()
    for at in range(0, len(ids), batch):
        embed_records(conn, notes, live, ids[at : at + batch], settings, timings=timings)
    inline_rate = PIPELINE_ROWS / (time.perf_counter() - started)
    conn.execute("ALTER TABLE notes ENABLE TRIGGER notes_outbox")
    _reset(conn)
    total = sum(timings.values())
    steps = ", ".join(f"{p} {timings.get(p, 0) / total:.0%}" for p in PHASES)
    report(
        f"embed_records in-process, m={settings.vector_hnsw_m}"
        f" ef_construction={settings.vector_hnsw_ef_construction} ({steps})",
        f"{inline_rate:,.0f} records/s",
    )

    time.sleep(3)  # the worker is up and has made the version live
    # Warm up both worker processes (a local model loads on a process's first batch, seconds
    # that are start-up, not throughput): a few batches' worth, embedded and then cleared.
    _insert(conn, rows[: 4 * settings.embedding_batch_records])
    while status(conn, notes, spec).pending:
        time.sleep(0.05)
    _reset(conn)
    variants = [tuple(int(n) for n in pair.split("/")) for pair in PIPELINE_HNSW.split(",")]
    for variant in [*variants, None]:
        conn.execute(drop_hnsw_index_sql("notes", spec.version))
        if variant is not None:
            m, ef = variant
            conn.execute(
                create_hnsw_index_sql("notes", spec.version, DIMS, m=m, ef_construction=ef)
            )
        started = time.perf_counter()
        _insert(conn, rows)
        while status(conn, notes, spec).pending:
            time.sleep(0.05)
        rate = PIPELINE_ROWS / (time.perf_counter() - started)
        label = (
            "no HNSW index" if variant is None else f"m={variant[0]} ef_construction={variant[1]}"
        )
        outside = (1 / rate - 1 / embedder_rate) * 1000
        report(
            f"pipeline insert → searchable ({PIPELINE_ROWS} notes, {label})",
            f"{rate:,.0f} records/s; {outside:.2f} ms/record besides embedding",
        )
        report(f"pipeline ÷ embedder ({label})", f"{rate / embedder_rate:.2f}", "goal >= 0.8")
        _reset(conn)
    conn.execute(drop_hnsw_index_sql("notes", spec.version))
    conn.execute(hnsw_index_sql(notes, spec, settings))


def _insert(conn: psycopg.Connection, rows: list[tuple[str, str]]) -> None:
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO notes (id, title, body, public, tags, created_at, updated_at)"
            " VALUES (gen_random_uuid(), %s, %s, true, '{}', now(), now())",
            rows,
        )


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE notes CASCADE")
    conn.execute("DELETE FROM embedding_records")


def populate(conn: psycopg.Connection, version: str, settings) -> None:  # type: ignore[no-untyped-def]
    """ROWS notes, each with one chunk whose vector sits near one of 1,000 subtopic centres."""
    started = time.perf_counter()
    conn.execute("ALTER TABLE notes DISABLE TRIGGER notes_outbox")
    conn.execute(drop_hnsw_index_sql("notes", version))
    # Two levels of clusters (100 topics, 10 subtopics each, points near a subtopic): structure
    # like real embeddings have, unlike isotropic noise around a few centres.
    conn.execute("DROP TABLE IF EXISTS bench_centroids")
    conn.execute("DROP TABLE IF EXISTS bench_topics")
    conn.execute(
        "CREATE TABLE bench_topics AS SELECT g AS id,"
        " (SELECT array_agg(random() - 0.5) FROM generate_series(1, %s) WHERE g > 0) AS c"
        " FROM generate_series(1, 100) g",
        (DIMS,),
    )
    conn.execute(
        "CREATE TABLE bench_centroids AS SELECT s AS id,"
        " (SELECT array_agg(x + (random() - 0.5) * 0.3) FROM unnest(t.c) x) AS c"
        " FROM generate_series(1, 1000) s JOIN bench_topics t ON t.id = 1 + s % 100"
    )
    conn.execute(
        "INSERT INTO notes (id, title, body, public, tags, created_at, updated_at)"
        " SELECT gen_random_uuid(),"
        " CASE WHEN g %% 100 = 0 THEN 'rare ' WHEN g %% 10 = 1 THEN 'some ' ELSE 'plain ' END || g,"
        " 'synthetic', true, '{}', now(), now() FROM generate_series(1, %s) g",
        (ROWS,),
    )
    conn.execute(
        "INSERT INTO notes_chunks (record_id, version, chunk, content, content_hash, model,"
        " embedding)"
        " SELECT n.id, %s, 0, n.title, md5(n.title), 'bench',"
        " (SELECT array_agg(x + (random() - 0.5) * %s) FROM unnest(c.c) x)::vector"
        " FROM notes n"
        " JOIN bench_centroids c ON c.id = 1 + (hashtext(n.id::text) & 2147483647) %% 1000",
        (version, NOISE),
    )
    conn.execute("ALTER TABLE notes ENABLE TRIGGER notes_outbox")
    report("populate (notes + chunks)", f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(
        create_hnsw_index_sql(
            "notes",
            version,
            DIMS,
            m=settings.vector_hnsw_m,
            ef_construction=settings.vector_hnsw_ef_construction,
        )
    )
    conn.execute("ANALYZE notes")
    conn.execute("ANALYZE notes_chunks")
    report(f"HNSW build, {ROWS} vectors", f"{time.perf_counter() - started:.1f} s")


async def search_measures(dsn: str, version: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        queries = await _queries(connection)
        sql = (
            "SELECT record_id FROM notes_chunks WHERE version = '{v}'"
            " ORDER BY (embedding::vector({d}) <=> $1::vector){extra} LIMIT {k}"
        )
        exact_sql = sql.format(v=version, d=DIMS, extra=" + 0", k=K)
        hnsw_sql = sql.format(v=version, d=DIMS, extra="", k=K)
        started = time.perf_counter()
        truth = [set(r[0] for r in await connection.fetch(exact_sql, q)) for q in queries]
        exact_qps = len(queries) / (time.perf_counter() - started)
        report("exact scan", f"{exact_qps:,.0f} QPS, recall 1.000")
        for ef in (40, 100, 200):
            await connection.execute(f"SET hnsw.ef_search = {ef}")
            started = time.perf_counter()
            found = [set(r[0] for r in await connection.fetch(hnsw_sql, q)) for q in queries]
            qps = len(queries) / (time.perf_counter() - started)
            each = [len(f & t) / K for f, t in zip(found, truth, strict=True)]
            # Applied? (a SET that did not take would leave every ef with the same results)
            shown = await connection.fetchval("SHOW hnsw.ef_search")
            lost = sum(1 for r in each if r < 0.5)
            report(
                f"HNSW ef_search {shown}",
                f"{qps:,.0f} QPS, recall@10 {statistics.mean(each):.3f}"
                f" (min {min(each):.1f}; {lost} of {len(each)} queries below 0.5)",
            )
    finally:
        await connection.close()


async def _queries(connection: asyncpg.Connection) -> list[str]:
    rows = await connection.fetch(
        "SELECT (SELECT array_agg(x + (random() - 0.5) * $2) FROM unnest(c.c) x)::vector::text"
        " FROM generate_series(1, $1) g JOIN bench_centroids c ON c.id = 1 + (g * 7919) % 1000",
        QUERIES,
        NOISE,
    )
    return [row[0] for row in rows]


async def api_measures(port: int, api_pid: int, dsn: str, spec, settings) -> None:  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        email = f"bench-{time.time_ns()}@example.com"
        signup = await client.post("/auth/signup", json={"email": email, "password": "bench pass"})
        assert signup.status_code == 201, signup.text
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE users SET role = 'admin' WHERE email = %s", (email,))
        token = await client.post(
            "/auth/token", json={"grant_type": "password", "email": email, "password": "bench pass"}
        )
        client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        query = "synthetic meadow lantern"

        async def api_search(**extra: object) -> httpx.Response:
            response = await client.post(
                "/collections/notes/search",
                json={"query": query, "mode": "vector", "k": K, **extra},
            )
            assert response.status_code == 200, response.text
            return response

        for _ in range(20):
            await api_search()
        httpx_times = []
        for _ in range(200):
            started = time.perf_counter()
            await api_search()
            httpx_times.append(time.perf_counter() - started)
        # Timed like the SQL side below: one held connection, one request at a time, through a
        # client that only writes the request and reads the response's bytes (asyncpg is a lean
        # client; httpx spent more CPU per request than the server did, and was counted as API).
        body = json.dumps({"query": query, "mode": "vector", "k": K}).encode()
        request = (
            f"POST /collections/notes/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {client.headers['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        # The API process works in the background too (the relay polls, gauges refresh): its
        # CPU over as long a time with no request is taken off the searches' share.
        idle_before, idle_started = cpu_seconds(api_pid), time.perf_counter()
        await asyncio.sleep(2)
        idle_after, idle_seconds = cpu_seconds(api_pid), time.perf_counter() - idle_started
        timed_started = time.perf_counter()
        cpu_before = cpu_seconds(api_pid)
        api_times = await _raw_request_times(port, request, API_SEARCHES)
        cpu_after = cpu_seconds(api_pid)
        timed_seconds = time.perf_counter() - timed_started

        # The same statement the service runs, straight through asyncpg.
        from backend.vectors.service import SearchService

        notes = CollectionRegistry.discover().get("notes")
        vector = vector_literal(embedder_for(spec.choice, settings).embed([query])[0])
        service = SearchService.__new__(SearchService)
        statement = service._vector_statement(notes, spec, _true(), vector, K * 4, exact=False)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        reader = Reader(pool)
        sql, args = reader._compile(statement)
        sql_times = []
        async with pool.acquire() as connection:
            for _ in range(20):
                await connection.fetch(sql, *args)
            for _ in range(API_SEARCHES):
                started = time.perf_counter()
                await connection.fetch(sql, *args)
                sql_times.append(time.perf_counter() - started)
        await pool.close()
        floor_times = await _floor_times(dsn, sql, args, request)
        api_p50 = statistics.median(api_times) * 1000
        sql_p50 = statistics.median(sql_times) * 1000
        floor_p50 = statistics.median(floor_times) * 1000
        other = (await client.get("/collections/notes/records?limit=1")).json()["items"][0]["id"]
        read_times = []
        for _ in range(200):
            started = time.perf_counter()
            await client.get(f"/collections/notes/records/{other}")
            read_times.append(time.perf_counter() - started)
        report(
            "for scale: API GET one record p50", f"{statistics.median(read_times) * 1000:.2f} ms"
        )
        plan = (await api_search()).headers["litebase-search-plan"]
        report(f"API search p50 (vector, k=10; {plan})", f"{api_p50:.2f} ms")
        report(
            "  the same through httpx (client cost included)",
            f"{statistics.median(httpx_times) * 1000:.2f} ms",
        )
        report("same SQL via asyncpg p50", f"{sql_p50:.2f} ms")
        report("API ÷ SQL", f"{api_p50 / sql_p50:.2f}", "goal <= 1.3")
        report("floor: bare uvicorn + asyncpg, the same SQL, p50", f"{floor_p50:.2f} ms")
        report("floor ÷ SQL (the least any API here can reach)", f"{floor_p50 / sql_p50:.2f}")
        report("API ÷ floor", f"{api_p50 / floor_p50:.2f}")
        report(
            "loopback TCP round trip between two processes, p50",
            f"{loopback_round_trip_us():.0f} us",
        )
        if None not in (cpu_before, cpu_after, idle_before, idle_after):
            background = (idle_after - idle_before) / idle_seconds * timed_seconds  # type: ignore[operator]
            report(
                "API process CPU per search (less its idle background)",
                f"{(cpu_after - cpu_before - background) / len(api_times) * 1e6:.0f} us",  # type: ignore[operator]
            )


async def _raw_request_times(
    port: int, request: bytes, count: int, warm_up: int = 0
) -> list[float]:
    """Seconds per request for ``count`` requests after ``warm_up`` untimed ones, one at a
    time on one keep-alive connection, reading raw bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    for _ in range(warm_up + count):
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        times.append(time.perf_counter() - started)
    writer.close()
    return times[warm_up:]


async def _floor_times(dsn: str, sql: str, args: list[object], request: bytes) -> list[float]:
    """The same request timed against the floor app (FLOOR_APP) serving the same SQL."""
    port = free_port()
    floor = serve(
        [sys.executable, "-c", FLOOR_APP, dsn, str(port), sql, json.dumps(args)], dict(os.environ),
        port,
    )  # fmt: skip
    try:
        return await _raw_request_times(port, request, API_SEARCHES, warm_up=20)
    finally:
        stop(floor)


async def filtered_recall(dsn: str, spec, settings) -> None:  # type: ignore[no-untyped-def]
    """Filtered recall@10 through the search service itself (planning and SQL as the API runs
    them), with queries drawn from the data's own distribution: their vectors are put in the
    query cache, as if a real model had embedded the query text."""
    from backend.collections.rules import compile_rules
    from backend.collections.service import RecordService
    from backend.lib.clock import SystemClock
    from backend.vectors.queries import QueryEmbeddings
    from backend.vectors.service import SearchService
    from backend.vectors.versions import ActiveVersions

    registry = CollectionRegistry.discover()
    notes = registry.get("notes")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    reader = Reader(pool)
    records = RecordService(
        None,  # type: ignore[arg-type]  # reads only: no ORM session needed
        reader,
        settings,
        SystemClock(),
        compile_rules(registry, settings.filter_max_length),
    )
    embeddings = QueryEmbeddings(settings)
    service = SearchService(
        records,
        reader,
        settings,
        ActiveVersions(reader, settings.vector_version_cache_seconds),
        embeddings,
    )
    async with pool.acquire() as connection:
        queries = await _queries(connection)
    try:
        for label, word in (("1%", "rare"), ("10%", "some")):
            recalls, plans, counts = [], set(), []
            async with pool.acquire() as connection:
                for n, vector in enumerate(queries):
                    text = f"query {n}"
                    embeddings._cache[(spec.version, text)] = vector
                    exact = await connection.fetch(
                        "SELECT min(c.embedding::vector(384) <=> $1::vector) d"
                        " FROM notes_chunks c JOIN notes n ON n.id = c.record_id"
                        " WHERE n.title LIKE $2 GROUP BY c.record_id ORDER BY d LIMIT $3",
                        vector,
                        f"{word} %",
                        K,
                    )
                    hits = await service.search(
                        notes, None, query=text, mode="vector", k=K, filter_=f"title ~ '{word} '"
                    )
                    assert service.last_plan is not None
                    plans.add(service.last_plan.describe())
                    tenth = exact[-1]["d"]
                    recalls.append(sum(1 for h in hits if 1 - h.score <= tenth + 1e-6) / K)
                    counts.append(len(hits))
            report(
                f"filtered recall@10 at {label} ({'; '.join(sorted(plans))})",
                f"{statistics.mean(recalls):.3f} (min {min(recalls):.1f}; {min(counts)}+ items)",
                "goal >= 0.95",
            )
    finally:
        await pool.close()


def _true():  # type: ignore[no-untyped-def]
    from sqlalchemy import true

    return true()


if __name__ == "__main__":
    main()
