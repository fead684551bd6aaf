"""The real stack for the e2e suite: `litebase api` as shipped and a Celery worker, as processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import msgspec
import psycopg
import pytest
import redis
from celery.exceptions import TimeoutError as CeleryTimeout

from backend.config import settings_from_env
from backend.lib.urls import libpq_database_url
from backend.mail.service import SENT_MAIL_KEY
from tests.fake_openai import FakeOpenAI
from tests.support import (
    TEST_PASSWORD_HASH,
    Services,
    free_port,
    with_redis_db,
    worker_index,
    worker_redis_db,
)
from tests.waiting import eventually
from workers.celery_app import JOBS_QUEUE, QUEUES, create_celery_app

PASSWORD = "correct horse battery staple"
E2E_REDIS_DB = worker_redis_db(2)
# The Redis database of a stack_apart (its broker and channels), clear of the tiers' ones.
APART_REDIS_DB = 10 + worker_index()
E2E_DATABASE = f"litebase_e2e_{worker_index()}"
ROOT = Path(__file__).parents[2]
E2E_MODELS = """
providers:
  fake: {{base_url: "{base_url}", api_key: sk-e2e}}
models:
  chat: {{provider: fake, model: fake-chat, retries: 0, timeout_seconds: 10}}
  gpt-4o-mini: {{provider: fake, model: fake-chat, retries: 0, timeout_seconds: 10}}
  trickle: {{provider: fake, model: fake-trickle, retries: 0, timeout_seconds: 10}}
  flaky: {{provider: fake, model: fake-500, retries: 0, fallbacks: [chat]}}
  embed: {{provider: fake, model: fake-embed, retries: 0}}
"""


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    database_url: str
    redis_url: str
    log_dir: Path
    # The API's process (a test may kill it to see what follows).
    process: subprocess.Popen[bytes] | None = None


def run_python(
    *args: str, env: dict[str, str], timeout: float = 120, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m …`` (from the repo root, unless told) to completion, capturing its
    output."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def _running_api(
    env: dict[str, str], log: Path, ready: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = _spawn(
        [sys.executable, "-m", "backend.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}{ready}", process, log)
        yield base, process
    finally:
        _stop(process)


@contextmanager
def litebase_api(env: dict[str, str], log: Path, ready: str = "/health") -> Iterator[str]:
    """`litebase api` as shipped, on a free loopback port, until the block ends; its base URL."""
    with _running_api(env, log, ready) as (base, _):
        yield base


@contextmanager
def api_beside(stack: Stack, overrides: dict[str, str], log: Path) -> Iterator[Stack]:
    """A second `litebase api` with some settings (environment variables) changed, on the
    stack's database, Redis and worker unless the changes name others; the stack it makes, with
    its process, until the block ends."""
    env = {**stack.env, **overrides}
    with _running_api(env, log, "/ready") as (base, process):
        yield Stack(base, env, env["DATABASE_URL"], env["REDIS_URL"], stack.log_dir, process)


class RestartableApi:
    """`litebase api` on a port that stays the same when the process is stopped and started again
    (a client's reconnects then reach the new process)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.port = env, log, free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "backend.cli", "api", "--host", "127.0.0.1"]
        self.process = _spawn([*argv, "--port", str(self.port)], self.env, self.log)
        wait_for(f"{self.base_url}/ready", self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def kill(self) -> None:
        """The process dies at once (SIGKILL): no close frames, no graceful shutdown (which
        waits up to 10 s for open sockets)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None


@contextmanager
def restartable_api(stack: Stack, overrides: dict[str, str], log: Path) -> Iterator[RestartableApi]:
    """A second `litebase api` beside the stack (its database, Redis and worker) that a test may
    stop and start again on the same port, until the block ends."""
    api = RestartableApi({**stack.env, **overrides}, log)
    api.start()
    try:
        yield api
    finally:
        api.stop()


@contextmanager
def litebase_worker(env: dict[str, str], log: Path) -> Iterator[None]:
    """`litebase worker` as shipped, one pool of one process on every queue, ready (it answered
    a ping), until the block ends."""
    process = _spawn(
        [
            *(sys.executable, "-m", "backend.cli", "worker"),
            *("--queues", ",".join(QUEUES), "--concurrency", "1"),
        ],
        env,
        log,
    )
    try:
        wait_for_worker(env, process, log)
        yield
    finally:
        _stop(process)


@contextmanager
def stack_apart(
    stack: Stack, services: Services, overrides: dict[str, str], log_dir: Path
) -> Iterator[Stack]:
    """A stack of its own, with some settings (environment variables) changed: a new database
    and Redis database, `litebase api` (so its own outbox relay) and `litebase worker`, until
    the block ends. The session stack's relay and worker never see its events and tasks."""
    name = f"lbt_apart_{uuid.uuid4().hex[:8]}"
    database_url = services.create_database(name)
    redis_url = with_redis_db(services.redis_url, APART_REDIS_DB)
    with redis.Redis.from_url(redis_url) as store:
        store.flushdb()
    env = {**stack.env, "DATABASE_URL": database_url, "REDIS_URL": redis_url, **overrides}
    try:
        with (
            litebase_worker(env, log_dir / "worker.log"),
            litebase_api(env, log_dir / "api.log", "/ready") as base,
        ):
            yield Stack(base, env, database_url, redis_url, log_dir)
    finally:
        services.drop_database(name)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def wait_for_worker(
    env: dict[str, str],
    process: subprocess.Popen[bytes],
    log: Path,
    queues: tuple[str | None, ...] = (None,),
    timeout: float = 60,
) -> None:
    """Until a ``system.ping`` sent to each of ``queues`` (None: its own route) comes back from
    the worker: its pools are up and consuming."""
    celery = create_celery_app(settings_from_env(env))
    deadline = time.monotonic() + timeout
    try:
        for queue in queues:
            sent = celery.send_task("system.ping", args=["ready"], queue=queue)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"worker exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                    )
                try:
                    sent.get(timeout=0.5)
                    break
                except CeleryTimeout:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"worker not ready in {timeout}s:\n{log.read_text()[-3000:]}"
                        ) from None
    finally:
        celery.close()


def sql(stack: Stack, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on the stack's database (setup no route does, or a look at the rows);
    its rows, if it returns any."""
    with psycopg.connect(libpq_database_url(stack.database_url), autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


async def job_reaching(
    client: httpx.AsyncClient, job_id: str, statuses: set[str], within: float = 30
) -> dict[str, Any]:
    """The job, polled over HTTP, once its status is one of ``statuses``."""

    async def job() -> dict[str, Any] | None:
        current: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        return current if current["status"] in statuses else None

    return await eventually(job, within=within, what=f"job {job_id} in {sorted(statuses)}")


async def finished_job(
    client: httpx.AsyncClient, job_id: str, within: float = 30
) -> dict[str, Any]:
    """The job once it has finished (succeeded, failed or cancelled), polled over HTTP."""
    return await job_reaching(client, job_id, {"succeeded", "failed", "cancelled"}, within)


async def signed_up(stack: Stack, *, admin: bool = False) -> httpx.AsyncClient:
    """A client of the stack signed in as a new user (an admin, promoted in SQL, if asked);
    the caller closes it."""
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=10)
    email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    signed = (await client.post("/auth/signup", json={"email": email, "password": PASSWORD})).json()
    if admin:
        with psycopg.connect(libpq_database_url(stack.database_url), autocommit=True) as conn:
            conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (signed["user"]["id"],))
        signed = (
            await client.post(
                "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
            )
        ).json()
        assert signed["user"]["role"] == "admin"
    client.headers["Authorization"] = f"Bearer {signed['access_token']}"
    client.tokens = signed  # type: ignore[attr-defined]
    return client


# The app's pages that mails link to, in every stack (APP_URL + MAIL_*_PATH).
APP_URL = "https://app.example.com"
_TOKEN_LINK = re.compile(r"https?://\S+[?&]token=[^\s&]+")


def mailed_link(mail: dict[str, str]) -> str:
    """The link with a token in a mail's text part (verify, reset, email change, invitation)."""
    found = _TOKEN_LINK.search(mail["text"])
    assert found, mail["text"]
    return found.group(0)


def mailed_token(mail: dict[str, str]) -> str:
    """The token of a mail's link, as the app's page reads it from its query (which is in the
    fragment when a page's path is, e.g. MAIL_VERIFY_PATH=/#/verify)."""
    return parse_qs(mailed_link(mail).split("?", 1)[1])["token"][0]


def mailed_code(mail: dict[str, str]) -> str:
    """The six-digit code of a sign-in code mail (on a line of its own in the text part)."""
    found = re.search(r"^([0-9]{6})$", mail["text"], re.MULTILINE)
    assert found, mail["text"]
    return found.group(1)


@pytest.fixture
def inbox(stack: Stack) -> Callable[[str, str], dict[str, str]]:
    """Wait for the mail to an address whose subject holds a phrase; the worker delivers to
    the console backend, which keeps the newest mails in Redis (to, subject, text, html, kind,
    locale: backend/mail/service.py's SentMail)."""
    store = redis.Redis.from_url(stack.redis_url)

    def _wait_for(to: str, subject_part: str, timeout: float = 30) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in store.lrange(SENT_MAIL_KEY, 0, -1):
                mail: dict[str, str] = msgspec.json.decode(raw)
                if mail["to"] == to and subject_part in mail["subject"]:
                    return mail
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to} about {subject_part!r} within {timeout}s")

    return _wait_for


def session_stack(
    services: Services, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The ``stack`` fixture's body. The fixture is registered once, in tests/conftest.py, so
    the e2e and the security tests share one stack per xdist worker: two would share its
    database name and Redis database, and each one's worker would take the other's tasks."""
    database_url = services.create_database(E2E_DATABASE)
    redis_url = with_redis_db(services.redis_url, E2E_REDIS_DB)
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    # Model aliases for the gateway, served by the fake upstream (tests/fake_openai.py).
    models_file = log_dir / "models.yaml"
    models_file.write_text(E2E_MODELS.format(base_url=upstream.base_url))
    env = {
        **os.environ,
        "LITEBASE_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MAX_BODY_BYTES": "4096",
        "CELERY_MAX_DELIVERIES": "3",
        # Every e2e test signs people up from 127.0.0.1; the limits have tests of their own.
        "RATE_LIMIT_SIGNUP_PER_MINUTE": "10000",
        "RATE_LIMIT_TOKEN_PER_MINUTE": "10000",
        "RATE_LIMIT_PASSWORD_PER_MINUTE": "10000",
        "RATE_LIMIT_ANONYMOUS_PER_MINUTE": "10000",
        # Anonymous users (grant_type anonymous) for the clients' and the matrix's guests.
        "AUTH_ANONYMOUS_ENABLED": "true",
        "AUTH_ANONYMOUS_PER_HOUR": "10000",
        **{name.upper(): str(value) for name, value in TEST_PASSWORD_HASH.items()},
        "REALTIME_AUTH_TIMEOUT_SECONDS": "1",
        "REALTIME_MAX_SUBSCRIPTIONS": "5",
        "RELAY_POLL_SECONDS": "0.2",
        "CORS_ORIGINS": "https://app.example.com",
        "APP_URL": APP_URL,
        "PYTHONUNBUFFERED": "1",
        # Embeddings through the openai provider, against the fake upstream on loopback.
        "EMBEDDING_PROVIDER": "openai",
        "EMBEDDING_BASE_URL": upstream.base_url,
        "EMBEDDING_API_KEY": "sk-test",
        "EMBEDDING_MODEL": "fake-embed",
        "EMBEDDING_DIMENSIONS": "64",
        "EMBEDDING_BATCH_RECORDS": "16",
        "EMBEDDING_MAX_RETRIES": "2",
        "EMBEDDING_RETRY_BACKOFF_SECONDS": "0.2",
        # Failed records come due for the sweep within a second or two (when a test runs beat).
        "EMBEDDING_SWEEP_BACKOFF_SECONDS": "0.5",
        "EMBEDDING_SWEEP_BACKOFF_MAX_SECONDS": "2",
        # Webhooks to the tests' receiver on loopback, retried within a second or two.
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "WEBHOOK_TIMEOUT_SECONDS": "5",
        "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.2",
        "WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": "1",
        "WEBHOOK_RETRY_WINDOW_SECONDS": "20",
        # The model gateway, against the same fake upstream.
        "LITEBASE_MODELS": str(models_file),
        "AI_USAGE_FLUSH_SECONDS": "0.1",
        # As an app adds its own: the echo route and the test-only job types.
        "APP_MODULES": "tests.e2e.app",
        # Files on the local disk, in the session's own folder (the worker deletes there too).
        "FILES_LOCAL_DIR": str(tmp_path_factory.mktemp("e2e-files")),
    }
    worker = _spawn(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "worker",
            "--concurrency",
            "1",
            "--include",
            "tests.e2e.worker_tasks",
        ],
        env,
        log_dir / "worker.log",
    )
    try:
        with _running_api(env, log_dir / "api.log", "/ready") as (base_url, api):
            # Both pools: the system one (its own route) and the users' jobs one.
            wait_for_worker(env, worker, log_dir / "worker.log", (None, JOBS_QUEUE))
            yield Stack(base_url, env, database_url, redis_url, log_dir, api)
    finally:
        _stop(worker)
        services.drop_database(E2E_DATABASE)
