"""`litebase worker` without --queues: two pools under one process, which passes signals on
and stops the lot when a pool dies (so ECS or `litebase dev` sees the failure)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import _spawn, _stop


def _pools(parent: subprocess.Popen[bytes], log: Path, within: float = 60) -> dict[str, int]:
    """The pid of each pool (by its --hostname), once both say they are ready."""
    deadline = time.monotonic() + within
    while True:
        text = log.read_text(errors="replace")
        if "system@" in text and "jobs@" in text and text.count("ready") >= 2:
            break
        assert parent.poll() is None, text[-3000:]
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.1)
    pools = {}
    for child in psutil.Process(parent.pid).children():
        cmdline = child.cmdline()
        pools[cmdline[cmdline.index("--hostname") + 1].split("@")[0]] = child.pid
    assert set(pools) == {"system", "jobs"}
    return pools


def _gone(pid: int, within: float = 15) -> bool:
    try:
        psutil.Process(pid).wait(within)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


@pytest.fixture
def worker(stack, tmp_path):
    log = tmp_path / "worker.log"
    process = _spawn(
        [sys.executable, "-m", "backend.cli", "worker", "--concurrency", "1",
         "--jobs-concurrency", "1", "--pool", "threads"],
        stack.env,
        log,
    )  # fmt: skip
    yield process, log
    _stop(process)


def test_a_dying_pool_takes_the_other_down_and_fails(worker):
    process, log = worker
    pools = _pools(process, log)
    psutil.Process(pools["jobs"]).kill()
    assert process.wait(30) != 0
    assert _gone(pools["system"])


def test_a_signal_to_the_command_stops_both_pools_cleanly(worker):
    process, log = worker
    pools = _pools(process, log)
    process.send_signal(signal.SIGTERM)  # to the command alone, as `docker stop` does to PID 1
    assert process.wait(30) == 0
    assert all(_gone(pid) for pid in pools.values())
