"""CRUD throughput: Litebase's GET by id and a filtered list, beside a bare Litestar + asyncpg
handler reading the same row (no auth, no rules), at concurrency 32 over loopback.

Prints a markdown table and the ratio against the bare handler (goal: >= 0.6 for GET by id),
and the filtered list's ratio to a bare handler reading the same 20 rows.
Uses wrk when it is installed, else a small keep-alive HTTP client in a separate process.
Set DATABASE_URL / REDIS_URL to use real servers; otherwise embedded ones are started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from backend.db.migrate import upgrade  # noqa: E402
from backend.lib.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from backend.lib.urls import libpq_database_url  # noqa: E402

LIST = "Litebase filtered list (public = true, limit 20)"
BARE_LIST = "bare Litestar + asyncpg list of the same 20 rows"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))

BARE_APP = """
import os, asyncpg
from litestar import Litestar, get

pool = None

async def start() -> None:
    global pool
    pool = await asyncpg.create_pool(os.environ["BARE_DSN"], min_size=4, max_size=10)

@get("/notes/{note_id:uuid}")
async def read(note_id: "uuid.UUID") -> dict:
    row = await pool.fetchrow("SELECT id, title, body, public FROM notes WHERE id = $1", note_id)
    return {"id": str(row["id"]), "title": row["title"], "body": row["body"], "public": row["public"]}

@get("/notes")
async def page() -> dict:
    rows = await pool.fetch(
        "SELECT title, body, public, tags, id, owner, org, created_at, updated_at FROM notes"
        " WHERE public = true ORDER BY created_at DESC, id DESC LIMIT 21"
    )
    return {"items": [dict(row) for row in rows[:20]], "next_cursor": None}

import uuid
app = Litestar([read, page], on_startup=[start], logging_config=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"server {argv} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(15)


CLIENT = r"""
import asyncio, sys, time, json
host, port, path, headers, concurrency, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
latencies, errors = [], 0
async def worker(deadline):
    global errors
    reader, writer = await asyncio.open_connection(host, port)
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            errors += 1
        latencies.append(time.perf_counter() - started)
    writer.close()
async def main():
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))
asyncio.run(main())
latencies.sort()
print(json.dumps({"requests": len(latencies), "errors": errors, "seconds": seconds,
  "p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)]}))
"""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, path: str, headers: dict[str, str], server: int) -> dict[str, float]:
    """Load ``path``; besides req/s, the server's CPU time per request: the load client shares
    the cores, so req/s moves with whatever else runs, while CPU per request mostly does not."""
    before = cpu_seconds(server)
    result = _load(port, path, headers)
    after = cpu_seconds(server)
    served = result["rps"] * SECONDS
    if before is not None and after is not None and served:
        result["cpu_us"] = (after - before) / served * 1e6
    return result


def _load(port: int, path: str, headers: dict[str, str]) -> dict[str, float]:
    if shutil.which("wrk"):
        header_args = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
        out = subprocess.run(
            ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{int(SECONDS)}s", "--latency", *header_args,
             f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

        def ms(label: str) -> float:
            value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
            return float(value) / {"us": 1000, "ms": 1, "s": 0.001}[unit]

        return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "errors": 0}
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, "127.0.0.1", str(port), path, json.dumps(headers),
         str(CONCURRENCY), str(SECONDS)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = json.loads(out)
    return {
        "rps": result["requests"] / result["seconds"],
        "p50": result["p50"] * 1000,
        "p99": result["p99"] * 1000,
        "errors": result["errors"],
    }


def loopback_round_trip_us(trips: int = 2000) -> float:
    """Median microseconds for a 64-byte ping-pong over loopback TCP between two processes:
    what each extra hop (client → API, API → Redis, API → upstream) costs on this machine
    before any code runs. On a VM whose idle cores halt, a wake-up can cost far more than
    the send itself."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        echo = subprocess.Popen(
            [sys.executable, "-c", _ECHO, str(listener.getsockname()[1]), str(trips)]
        )
        client, _ = listener.accept()
        with client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(trips):
                started = time.perf_counter()
                client.sendall(b"x" * 64)
                received = 0
                while received < 64:
                    received += len(client.recv(64 - received))
                times.append(time.perf_counter() - started)
        echo.wait(10)
    times.sort()
    return times[len(times) // 2] * 1e6


_ECHO = """
import socket, sys
peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for _ in range(int(sys.argv[2])):
    data = b""
    while len(data) < 64:
        data += peer.recv(64 - len(data))
    peer.sendall(data)
"""


@contextmanager
def embedded_services() -> Iterator[tuple[str, str]]:
    """(DATABASE_URL, REDIS_URL): the environment's, or embedded servers for the bench's life."""
    with tempfile.TemporaryDirectory(prefix="lbbench-", dir="/tmp") as tmp:
        postgres = redis_server = None
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(Path(tmp) / "pg")
            database_url = postgres.start()
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
            redis_url = redis_server.start()
        try:
            yield database_url, redis_url
        finally:
            if redis_server:
                redis_server.stop()
            if postgres:
                postgres.stop()


def main() -> None:
    with embedded_services() as (database_url, redis_url):
        run(database_url, redis_url)


def run(database_url: str, redis_url: str) -> None:
    upgrade(database_url)
    env = {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITEBASE_ENV": "test",
        "LOG_LEVEL": "WARNING", "RELAY_ENABLED": "false", "RATE_LIMIT_SIGNUP_PER_MINUTE": "1000",
        "BARE_DSN": libpq_database_url(database_url),
    }  # fmt: skip
    port = free_port()
    api = serve(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        env, port,
    )  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        email = f"bench-{time.time_ns()}@example.com"
        tokens = httpx.post(
            f"{base}/auth/signup", json={"email": email, "password": "bench password"}
        ).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        notes = [
            httpx.post(f"{base}/collections/notes/records", json={"title": f"note {i}", "public": i % 2 == 0}, headers=auth).json()
            for i in range(200)
        ]  # fmt: skip
        note_id = notes[0]["id"]
        results["Litebase GET /collections/notes/records/{id} (JWT + session + rule)"] = load(
            port, f"/collections/notes/records/{note_id}", auth, api.pid
        )
        results[LIST] = load(
            port, "/collections/notes/records?filter=public%20%3D%20true&limit=20", auth, api.pid
        )
    finally:
        stop(api)

    with tempfile.NamedTemporaryFile(
        "w", suffix=".py", dir=ROOT / "bench", prefix="_bare_", delete=False
    ) as f:
        f.write(BARE_APP)
        module = Path(f.name).stem
    bare_port = free_port()
    bare = serve(
        [sys.executable, "-m", "uvicorn", f"bench.{module}:app", "--port", str(bare_port),
         "--no-access-log", "--log-level", "warning"],
        env, bare_port,
    )  # fmt: skip
    try:
        results["bare Litestar + asyncpg GET by id (baseline)"] = load(
            bare_port, f"/notes/{note_id}", {}, bare.pid
        )
        results[BARE_LIST] = load(bare_port, "/notes", {}, bare.pid)
    finally:
        stop(bare)
        (ROOT / "bench" / f"{module}.py").unlink()

    baseline = results["bare Litestar + asyncpg GET by id (baseline)"]["rps"]
    print(f"CRUD on loopback, concurrency {CONCURRENCY}, {SECONDS:.0f} s each, load by "
          f"{'wrk' if shutil.which('wrk') else 'a Python keep-alive client'}\n")  # fmt: skip
    bare_cpu = results["bare Litestar + asyncpg GET by id (baseline)"].get("cpu_us")
    print(
        "| endpoint | req/s | p50 ms | p99 ms | errors | ratio to bare | server CPU us/req | CPU ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        cpu = r.get("cpu_us")
        cpu_cells = f"{cpu:.0f} | {bare_cpu / cpu:.2f}" if cpu and bare_cpu else "n/a | n/a"
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']:.0f} | {r['rps'] / baseline:.2f} | {cpu_cells} |"
        )
    first = next(iter(results.values()))
    print(f"\nratio (Litebase GET by id / bare): {first['rps'] / baseline:.2f} (goal >= 0.6)")
    if first.get("cpu_us") and bare_cpu:
        print(f"CPU ratio (bare CPU per request / Litebase's): {bare_cpu / first['cpu_us']:.2f}")
    # The list against a bare handler reading the same 20 rows (the table's ratios are to the
    # bare GET of one row, a lighter request).
    listed, bare_list = results[LIST], results[BARE_LIST]
    print(
        f"list ratio (Litebase filtered list / bare list): {listed['rps'] / bare_list['rps']:.2f}"
    )
    if listed.get("cpu_us") and bare_list.get("cpu_us"):
        print(f"list CPU ratio: {bare_list['cpu_us'] / listed['cpu_us']:.2f}")


if __name__ == "__main__":
    main()
