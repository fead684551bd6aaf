"""Model gateway overhead: the latency Litebase adds over calling the upstream directly.

A fake OpenAI-compatible upstream (tests/fake_openai.py) runs in its own process; the same
chat completion is sent to it directly and through Litebase (/v1/chat/completions with an
access token: auth, alias lookup, budget reservation in Redis, usage event, settle), at a
fixed open-loop rate of 50 and 200 requests/s from a client in a third process. The added
latency is the gateway's percentile minus the direct one. Streaming: time to the first
content chunk, direct vs through Litebase, one stream at a time. And the API process's CPU
per call, one call at a time, for a route without auth, with auth only, a chat call and a
streamed one.

Beside Litebase, the floor: a bare ASGI app under the same uvicorn that holds one Redis
script call per request (as a budget check must) and passes the body to the upstream with
aiohttp (the transport under the openai client), the upstream's bytes straight back (no auth,
no framework, no parsing). It is timed the same way: what any gateway in this stack, on this
machine, adds at the least.

Prints a markdown table and the ratio to the goal (added <= 1 ms at p50, <= 5 ms at p99).
Set DATABASE_URL / REDIS_URL to use real servers; otherwise embedded ones are started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from backend.db.migrate import upgrade  # noqa: E402
from bench.crud import embedded_services, free_port, loopback_round_trip_us, serve, stop  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
RATES = (50, 200)
STREAMS = int(os.environ.get("BENCH_STREAMS", "200"))
CPU_CALLS = int(os.environ.get("BENCH_CPU_CALLS", "300"))
GOAL_P50_MS, GOAL_P99_MS = 1.0, 5.0

UPSTREAM = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.fake_openai import fake_openai
with fake_openai() as upstream:
    print(upstream.base_url, flush=True)
    time.sleep(10**9)
"""

# The floor (see the docstring). argv: upstream base URL, Redis URL, port.
FLOOR_APP = r"""
import asyncio, sys
import aiohttp, uvicorn
from redis.asyncio import Redis
upstream, redis_url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = {}
RESERVE = "redis.call('INCRBY', KEYS[1], ARGV[1]) redis.call('EXPIRE', KEYS[1], 3600) return 0"
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                held["http"] = aiohttp.ClientSession()
                held["redis"] = Redis.from_url(redis_url)
                held["reserve"] = held["redis"].register_script(RESERVE)
                await send({"type": "lifespan.startup.complete"})
            else:
                await held["http"].close()
                await held["redis"].aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    await held["reserve"](keys=["floor:tokens"], args=[100])
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    async with held["http"].post(upstream + "/chat/completions", data=body, headers=headers) as r:
        kind = r.headers.get("Content-Type", "application/json").encode()
        await send({"type": "http.response.start", "status": r.status,
                    "headers": [(b"content-type", kind)]})
        async for piece in r.content.iter_any():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    asyncio.get_running_loop().create_task(held["redis"].incrby("floor:tokens", -10))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""

# Open loop: request i starts at i / rate whatever the earlier ones are doing.
CLIENT = r"""
import asyncio, json, sys, time
import httpx
mode, url, headers, body, rate, seconds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
latencies, errors = [], 0
async def one(client):
    global errors
    try:
        await attempt(client)
    except Exception as exc:
        errors += 1
        print(type(exc).__name__, exc, file=sys.stderr)
async def attempt(client):
    global errors
    started = time.perf_counter()
    if mode == "json":
        response = await client.post(url, json=body, headers=headers)
        errors += response.status_code != 200
        latencies.append(time.perf_counter() - started)
        return
    async with client.stream("POST", url, json=body, headers=headers) as response:
        first = None
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter() - started
        errors += response.status_code != 200 or first is None
        latencies.append(first or 0.0)
async def main():
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(20):  # warm the connections and both servers
            await one(client)
        latencies.clear()
        if mode == "stream":
            for _ in range(int(seconds)):
                await one(client)
            return
        count, tasks, t0 = int(rate * seconds), [], time.perf_counter()
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client)))
        await asyncio.gather(*tasks)
asyncio.run(main())
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000
print(json.dumps({"n": len(latencies), "errors": errors, "p50": pick(0.5), "p99": pick(0.99)}))
"""


def measure(mode: str, url: str, headers: dict[str, str], body: dict, rate: float, amount: float):
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, mode, url, json.dumps(headers), json.dumps(body),
         str(rate), str(amount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode or out.stderr.strip():
        print(out.stderr[-2000:], file=sys.stderr)
    return json.loads(out.stdout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    with embedded_services() as (database_url, redis_url):
        run(database_url, redis_url)


def run(database_url: str, redis_url: str) -> None:
    upgrade(database_url)
    fake = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM, str(ROOT)], stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert fake.stdout is not None
    upstream = fake.stdout.readline().strip()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as models:
        models.write(
            f'providers:\n  fake: {{base_url: "{upstream}", api_key: sk-bench}}\n'
            "models:\n  chat: {provider: fake, model: fake-chat, retries: 0}\n"
        )
    env = {
        **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "LITEBASE_ENV": "test",
        "LOG_LEVEL": "WARNING", "RELAY_ENABLED": "false", "LITEBASE_MODELS": models.name,
        # Limits that are checked on every call but never reached.
        "AI_USER_TOKENS_PER_PERIOD": str(10**12), "AI_USER_REQUESTS_PER_MINUTE": str(10**9),
    }  # fmt: skip
    port = free_port()
    api = serve(
        [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory", "--port",
         str(port), "--no-access-log", "--log-level", "warning"],
        env, port,
    )  # fmt: skip
    rows: list[tuple[str, dict, dict]] = []
    floors: dict[str, dict] = {}
    floor_port = free_port()
    floor = serve(
        [sys.executable, "-c", FLOOR_APP, upstream, redis_url, str(floor_port)], env, floor_port
    )
    try:
        base = f"http://127.0.0.1:{port}"
        tokens = httpx.post(
            f"{base}/auth/signup",
            json={"email": f"bench-{time.time_ns()}@example.com", "password": "bench password"},
        ).json()
        gateway = {"Authorization": f"Bearer {tokens['access_token']}"}
        direct = {"Authorization": "Bearer sk-bench"}
        body = {"messages": [{"role": "user", "content": "how fast is the gateway"}]}
        for rate in RATES:
            d = measure("json", f"{upstream}/chat/completions", direct,
                        {**body, "model": "fake-chat"}, rate, SECONDS)  # fmt: skip
            cpu = cpu_seconds(api.pid)
            g = measure("json", f"{base}/v1/chat/completions", gateway,
                        {**body, "model": "chat"}, rate, SECONDS)  # fmt: skip
            # Includes the client's 20 warm-up calls.
            g["cpu_ms"] = (cpu_seconds(api.pid) - cpu) * 1000 / (g["n"] + 20)
            rows.append((f"chat completion, {rate} req/s", d, g))
            floors[rows[-1][0]] = measure("json", f"http://127.0.0.1:{floor_port}", direct,
                                          {**body, "model": "fake-chat"}, rate, SECONDS)  # fmt: skip
        # CPU per call, one call at a time: the API's own cost, whatever the machine's load.
        cpu_rows = []
        with httpx.Client(base_url=base, timeout=30) as http:
            for name, call in (
                ("GET /health (no auth)", lambda: http.get("/health")),
                ("GET /v1/models (auth only)", lambda: http.get("/v1/models", headers=gateway)),
                (
                    "POST /v1/chat/completions",
                    lambda: http.post(
                        "/v1/chat/completions", json={**body, "model": "chat"}, headers=gateway
                    ),
                ),
                (
                    "POST /v1/chat/completions, streamed (whole stream)",
                    lambda: http.post(
                        "/v1/chat/completions",
                        json={**body, "model": "chat", "stream": True},
                        headers=gateway,
                    ),
                ),
            ):
                for _ in range(50):
                    call()
                before = cpu_seconds(api.pid)
                for _ in range(CPU_CALLS):
                    call()
                cpu_rows.append((name, (cpu_seconds(api.pid) - before) * 1000 / CPU_CALLS))
        stream = {**body, "stream": True}
        d = measure("stream", f"{upstream}/chat/completions", direct,
                    {**stream, "model": "fake-chat"}, 0, STREAMS)  # fmt: skip
        g = measure("stream", f"{base}/v1/chat/completions", gateway,
                    {**stream, "model": "chat"}, 0, STREAMS)  # fmt: skip
        rows.append(("stream, time to first token", d, g))
        floors[rows[-1][0]] = measure("stream", f"http://127.0.0.1:{floor_port}", direct,
                                      {**stream, "model": "fake-chat"}, 0, STREAMS)  # fmt: skip
    finally:
        stop(floor)
        stop(api)
        stop(fake)
        os.unlink(models.name)

    print(f"Gateway overhead on loopback: fake upstream direct vs through Litebase "
          f"({SECONDS:.0f} s per rate, open loop; {STREAMS} streams one at a time)\n")  # fmt: skip
    print("| load | direct p50 ms | Litebase p50 ms | added p50 ms | direct p99 ms "
          "| Litebase p99 ms | added p99 ms | requests | errors |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, d, g in rows:
        print(
            f"| {name} | {d['p50']:.2f} | {g['p50']:.2f} | {g['p50'] - d['p50']:.2f} "
            f"| {d['p99']:.2f} | {g['p99']:.2f} | {g['p99'] - d['p99']:.2f} | {g['n']} "
            f"| {d['errors'] + g['errors']} |"
        )
    print("\nThe floor: a bare ASGI app, one Redis script call, the body passed on with aiohttp\n")
    print("| load | floor p50 ms | floor added p50 ms | floor p99 ms | floor added p99 ms "
          "| Litebase added p50 over the floor's |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, d, g in rows:
        f = floors[name]
        print(
            f"| {name} | {f['p50']:.2f} | {f['p50'] - d['p50']:.2f} | {f['p99']:.2f} "
            f"| {f['p99'] - d['p99']:.2f} | {g['p50'] - f['p50']:.2f} |"
        )
    print(
        f"\nA loopback TCP round trip between two processes takes {loopback_round_trip_us():.0f} us"
        " (p50) here; through the gateway a call makes three where the direct call makes one."
    )
    print("\n| API process CPU per call, one at a time | ms |")
    print("| --- | ---: |")
    for name, ms in cpu_rows:
        print(f"| {name} | {ms:.2f} |")
    print()
    for name, _, g in rows:
        if "cpu_ms" in g:
            print(f"{name}: the API process spent {g['cpu_ms']:.2f} ms of CPU per call")
    print()
    for name, d, g in rows:
        print(
            f"{name}: added p50 {g['p50'] - d['p50']:.2f} ms = "
            f"{(g['p50'] - d['p50']) / GOAL_P50_MS:.1f}x the {GOAL_P50_MS:g} ms goal; added p99 "
            f"{g['p99'] - d['p99']:.2f} ms = {(g['p99'] - d['p99']) / GOAL_P99_MS:.1f}x the "
            f"{GOAL_P99_MS:g} ms goal"
        )


if __name__ == "__main__":
    main()
