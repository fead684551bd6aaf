"""`litebase dev`: embedded Postgres and Redis, migrations, then the API, a worker and beat.

The supervisor owns every process it starts. Ctrl-C or SIGTERM stops the children (SIGTERM,
then SIGKILL to each child's process group after a grace period), then Redis and Postgres,
so nothing is left running. A child that dies on its own brings the whole stack down with
a message, rather than leaving a half-working dev server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from backend.config import Settings
from backend.db.migrate import upgrade
from backend.lib.embedded import EmbeddedPostgres, EmbeddedRedis
from backend.lib.processes import die_with_parent
from backend.realtime.transport import uvicorn_flags

CHILD_GRACE_SECONDS = 6.0
READY_TIMEOUT_SECONDS = 60.0

_COLORS = {"litebase": "32", "api": "36", "worker": "35", "beat": "33"}


class DevServerError(RuntimeError):
    """`litebase dev` cannot start; the message says why and what to do."""


def _use_color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _prefix(name: str) -> str:
    label = f"{name:>8} |"
    return f"\033[{_COLORS.get(name, '0')}m{label}\033[0m" if _use_color() else label


_print_lock = threading.Lock()


def say(name: str, line: str) -> None:
    with _print_lock:
        sys.stdout.write(f"{_prefix(name)} {line}\n")
        sys.stdout.flush()


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        self.reader = threading.Thread(
            target=self._relay, args=(self.process.stdout,), daemon=True, name=f"log-{self.name}"
        )
        self.reader.start()

    def _relay(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            say(self.name, raw.decode(errors="replace").rstrip())

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def signal_group(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def wait_gone(self, deadline: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True


class DataDirLock:
    """An exclusive lock on the data dir, so two dev servers never share one Postgres."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "litebase.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DevServerError(
                f"the data dir {self.path.parent} is in use by another `litebase dev` "
                f"(pid {holder}); stop it, or pass --data-dir to use another"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def ensure_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DevServerError(
                f"{host}:{port} is already in use ({exc.strerror}); "
                "stop whatever listens there, or pass --port"
            ) from None


def wait_ready(url: str, children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            for child in children:
                if child.exited() is not None:
                    raise DevServerError(f"{child.name} exited with code {child.exited()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/ready").status_code == 200:
                    return
            time.sleep(0.1)
    raise DevServerError(f"the API did not become ready at {url}/ready within {timeout:.0f}s")


def run_dev(
    settings: Settings, *, host: str, port: int, data_dir: Path, with_worker: bool = True
) -> int:
    """Run the whole dev stack in the foreground; returns the exit code."""
    data_dir = data_dir.resolve()
    lock = DataDirLock(data_dir)
    lock.acquire()
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if not stop.is_set():
            say("litebase", f"{signal.Signals(signum).name}: stopping…")
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    postgres: EmbeddedPostgres | None = None
    redis_server: EmbeddedRedis | None = None
    children: list[Child] = []
    code = 0
    try:
        ensure_port_free(host, port)
        database_url = settings.database_url
        if not database_url:
            postgres = EmbeddedPostgres(data_dir / "pg")
            database_url = postgres.start()
            say("litebase", f"embedded Postgres (pgvector) at {database_url}")
        redis_url = settings.redis_url
        if not redis_url:
            redis_server = EmbeddedRedis(data_dir / "redis")
            redis_url = redis_server.start()
            say("litebase", f"embedded Redis at {redis_url}")
        upgrade(database_url)
        say("litebase", "migrations applied")

        env = {
            **os.environ,
            "LITEBASE_ENV": settings.env,
            "LITEBASE_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
        python = sys.executable
        children = [
            Child(
                "api",
                [
                    *(python, "-m", "uvicorn", "backend.app:create_app", "--factory"),
                    *("--host", host, "--port", str(port), "--no-access-log"),
                    # A socket that stopped reading must not hold shutdown up.
                    *("--timeout-graceful-shutdown", "5"),
                    *uvicorn_flags(settings),
                ],
            )
        ]
        if with_worker:
            children += [
                Child("worker", [python, "-m", "backend.cli", "worker"]),
                Child(
                    "beat",
                    [
                        *(python, "-m", "backend.cli", "beat"),
                        *("--schedule", str(data_dir / "celerybeat-schedule")),
                    ],
                ),
            ]
        for child in children:
            child.start(env)

        base_url = f"http://{host}:{port}"
        wait_ready(base_url, children, READY_TIMEOUT_SECONDS)
        say("litebase", f"API       {base_url}")
        say("litebase", f"docs      {base_url}/schema")
        say("litebase", f"realtime  ws://{host}:{port}/realtime")
        say("litebase", "ready; press Ctrl-C to stop")

        while not stop.wait(0.2):
            for child in children:
                if child.exited() is not None:
                    say("litebase", f"{child.name} exited with code {child.exited()}; stopping")
                    code = 1
                    stop.set()
    except DevServerError as exc:
        say("litebase", f"error: {exc}")
        code = 1
    finally:
        _stop_children(children)
        if redis_server is not None:
            redis_server.stop()
        if postgres is not None:
            postgres.stop()
        lock.release()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        say("litebase", "stopped")
    return code


def _stop_children(children: list[Child]) -> None:
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_GRACE_SECONDS
    for child in children:
        if not child.wait_gone(deadline):
            say("litebase", f"{child.name} did not stop in {CHILD_GRACE_SECONDS}s; killing it")
    # Kill what is left of each group: prefork pool children, stragglers.
    for child in children:
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        if child.reader is not None:
            child.reader.join(timeout=1)
