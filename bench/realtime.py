"""Realtime fan-out: 1,000 subscribers on loopback, writes at a steady rate.

Measures commit -> client latency (p50/p95/p99) and delivered / published (must be 1.0), and
runs the same fan-out through a bare `websockets` broadcast server as the baseline.
Prints a markdown table. BENCH_SUBSCRIBERS, BENCH_RATE (writes/s), BENCH_SECONDS tune it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import websockets

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import settings_from_env  # noqa: E402
from backend.db.migrate import upgrade  # noqa: E402
from backend.lib.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402
from backend.lib.urls import libpq_database_url  # noqa: E402
from backend.realtime.transport import uvicorn_flags  # noqa: E402

SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", "1000"))
RATE = float(os.environ.get("BENCH_RATE", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else float("nan")


async def open_sockets(url: str, first_frames: list[str], count: int) -> list:
    sockets = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(
            *(websockets.connect(url, max_queue=None) for _ in range(min(100, count - start)))
        )
        for ws in batch:
            for frame in first_frames:
                await ws.send(frame)
        sockets += batch
    return sockets


async def collect(sockets: list, expected: int, deadline: float) -> list[tuple[int, float]]:
    received: list[tuple[int, float]] = []

    async def drain(ws) -> None:
        got = 0
        while got < expected and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return
            frame = json.loads(raw)
            if frame.get("type") == "event":
                received.append((int(frame["record"]["title"]), time.time()))
                got += 1

    await asyncio.gather(*(drain(ws) for ws in sockets))
    return received


async def litebase_run(base: str, database_url: str) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base) as api:
        tokens = (
            await api.post(
                "/auth/signup",
                json={"email": f"bench-{time.time_ns()}@example.com", "password": "bench password"},
            )
        ).json()
    url = base.replace("http", "ws") + "/realtime"
    frames = [
        json.dumps({"type": "auth", "token": tokens["access_token"]}),
        json.dumps({"type": "subscribe", "id": "s", "channel": "collection:notes"}),
    ]
    sockets = await open_sockets(url, frames, SUBSCRIBERS)
    for ws in sockets:  # ready, subscribed
        await ws.recv()
        await ws.recv()
    published: dict[int, float] = {}
    total = int(RATE * SECONDS)

    def write() -> None:
        with psycopg.connect(libpq_database_url(database_url), autocommit=True) as conn:
            for i in range(total):
                conn.execute(
                    "INSERT INTO notes (id, title, owner, created_at, updated_at)"
                    " VALUES (gen_random_uuid(), %s, %s, now(), now())",
                    (str(i), tokens["user"]["id"]),
                )
                published[i] = time.time()  # committed (autocommit)
                time.sleep(1 / RATE)

    writer = asyncio.create_task(asyncio.to_thread(write))
    received = await collect(sockets, total, time.monotonic() + SECONDS + 30)
    await writer
    for ws in sockets:
        await ws.close()
    latencies = [at - published[i] for i, at in received if i in published]
    return {"published": total, "delivered": len(received), "latencies": latencies}  # type: ignore[dict-item]


BARE_SERVER = r"""
import asyncio, sys, websockets, json
clients = set()
async def handler(ws):
    clients.add(ws)
    try:
        async for message in ws:
            websockets.broadcast(clients - {ws}, message)
    finally:
        clients.discard(ws)
async def main():
    async with websockets.serve(handler, "127.0.0.1", int(sys.argv[1]), max_queue=None):
        await asyncio.Future()
asyncio.run(main())
"""


async def bare_run() -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, "-c", BARE_SERVER, str(port)], start_new_session=True
    )
    try:
        for _ in range(100):
            try:
                await (await websockets.connect(f"ws://127.0.0.1:{port}")).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        sockets = await open_sockets(f"ws://127.0.0.1:{port}", [], SUBSCRIBERS)
        publisher = await websockets.connect(f"ws://127.0.0.1:{port}")
        total = int(RATE * SECONDS)
        published: dict[int, float] = {}

        async def write() -> None:
            for i in range(total):
                published[i] = time.time()
                await publisher.send(json.dumps({"type": "event", "record": {"title": str(i)}}))
                await asyncio.sleep(1 / RATE)

        writer = asyncio.create_task(write())
        received = await collect(sockets, total, time.monotonic() + SECONDS + 30)
        await writer
        return {
            "published": total,
            "delivered": len(received),
            "latencies": [at - published[i] for i, at in received],
        }  # type: ignore[dict-item]
    finally:
        os.killpg(server.pid, signal.SIGTERM)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="lbbench-", dir="/tmp") as tmp:
        postgres, redis_server = (
            EmbeddedPostgres(Path(tmp) / "pg"),
            EmbeddedRedis(Path(tmp) / "redis", persistent=False),
        )
        database_url, redis_url = postgres.start(), redis_server.start()
        try:
            upgrade(database_url)
            port = free_port()
            env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITEBASE_ENV": "test",
                   "LOG_LEVEL": "WARNING", "REALTIME_SEND_QUEUE": "100000", "RELAY_POLL_SECONDS": "0.2",
                   "RATE_LIMIT_SIGNUP_PER_MINUTE": "1000"}  # fmt: skip
            api = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--port", str(port),
                 "--no-access-log", "--log-level", "warning", "--ws-max-queue", "100000",
                 *uvicorn_flags(settings_from_env(env))],
                env=env, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if httpx.get(f"{base}/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
                litebase = asyncio.run(litebase_run(base, database_url))
            finally:
                os.killpg(api.pid, signal.SIGTERM)
                api.wait(15)
        finally:
            redis_server.stop()
            postgres.stop()
    bare = asyncio.run(bare_run())
    print(
        f"Realtime fan-out: {SUBSCRIBERS} subscribers, {RATE:g} writes/s for {SECONDS:g} s, loopback\n"
    )
    print(
        "| server | published | delivered ÷ (published x subscribers) | p50 ms | p95 ms | p99 ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in (
        ("Litebase (commit → client, rules applied)", litebase),
        ("bare websockets.broadcast (baseline)", bare),
    ):
        ratio = r["delivered"] / (r["published"] * SUBSCRIBERS)
        lat = r["latencies"]
        print(
            f"| {name} | {r['published']} | {ratio:.4f} | {percentile(lat, 0.5):.1f} | {percentile(lat, 0.95):.1f} | {percentile(lat, 0.99):.1f} |"
        )  # type: ignore[arg-type]
    base_p50 = percentile(bare["latencies"], 0.5)  # type: ignore[arg-type]
    print(
        f"\np50 latency ratio (Litebase / bare): {percentile(litebase['latencies'], 0.5) / base_p50:.1f}"
    )  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
