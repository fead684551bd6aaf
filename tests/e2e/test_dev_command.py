"""`litebase dev`: starts everything, serves, refuses a second copy, stops clean, keeps data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from tests.e2e.conftest import _spawn, _stop, run_python, wait_for
from tests.support import free_port

pytestmark = pytest.mark.timeout(300)


def _dev_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return {**env, "LITEBASE_ENV": "dev", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}


def _dev_argv(data_dir: Path, port: int) -> list[str]:
    return ["backend.cli", "dev", "--port", str(port), "--data-dir", str(data_dir)]


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return _spawn([sys.executable, "-m", *_dev_argv(data_dir, port)], _dev_env(), log)


def _run_to_exit(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    return run_python(*_dev_argv(data_dir, port), env=_dev_env())


def _every_process_of(supervisor: subprocess.Popen[bytes], data_dir: Path) -> set[int]:
    pids = {child.pid for child in psutil.Process(supervisor.pid).children(recursive=True)}
    pids.add(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
    pids.add(int((data_dir / "redis" / "redis.pid").read_text().strip()))
    return pids


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _pg(data_dir: Path) -> psycopg.Connection:
    return psycopg.connect(
        host=str(data_dir / "pg"), user="postgres", dbname="postgres", autocommit=True
    )


def _redis(data_dir: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(data_dir / "redis" / "redis.sock"))


def _stopped_by(signum: int, supervisor: subprocess.Popen[bytes]) -> int:
    """Stop `litebase dev` as a person does (Ctrl-C, or SIGTERM from a process manager); its
    exit code. If it does not stop by itself, it is stopped the e2e way, then SIGKILLed."""
    supervisor.send_signal(signum)
    try:
        return supervisor.wait(timeout=30)
    finally:
        _stop(supervisor)


def test_dev_serves_stops_clean_and_keeps_data(tmp_path: Path):
    data_dir = tmp_path / "data"
    log = tmp_path / "dev.log"
    port = free_port()

    supervisor = _start(data_dir, port, log)
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", supervisor, log, timeout=120)
        pids = _every_process_of(supervisor, data_dir)
        names = " ".join(" ".join(psutil.Process(p).cmdline()) for p in pids)
        assert "uvicorn" in names and "worker" in names and "beat" in names

        with _pg(data_dir) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('survives a restart')")
        _redis(data_dir).set("kept", "also survives")

        # A second copy on the same data dir, or on the same port, refuses with a reason.
        same_dir = _run_to_exit(data_dir, free_port())
        assert same_dir.returncode != 0
        assert "in use by another `litebase dev`" in same_dir.stdout + same_dir.stderr
        same_port = _run_to_exit(tmp_path / "other", port)
        assert same_port.returncode != 0
        assert "already in use" in same_port.stdout + same_port.stderr
    finally:
        code = _stopped_by(signal.SIGINT, supervisor)
    assert code == 0, log.read_text()[-3000:]
    assert _alive(pids) == set(), log.read_text()[-3000:]

    log = tmp_path / "dev-again.log"
    supervisor = _start(data_dir, port, log)
    try:
        wait_for(f"http://127.0.0.1:{port}/ready", supervisor, log, timeout=60)
        pids = _every_process_of(supervisor, data_dir)
        with _pg(data_dir) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("survives a restart",)]
        assert _redis(data_dir).get("kept") == b"also survives"
    finally:
        code = _stopped_by(signal.SIGTERM, supervisor)
    assert code == 0
    assert _alive(pids) == set()
    assert "stopped" in log.read_text()
