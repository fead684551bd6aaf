"""`litebase worker` without --queues: two Celery pools under one command.

A Celery worker hands each free process the next message of any queue it consumes, so one
worker on every queue lets ten long user jobs take every process while a sign-in code waits.
Two workers, one for user jobs and one for the rest (mail, webhooks, embeddings, upkeep),
keep them apart; running both from one command keeps `litebase dev`, the Docker image and the
ECS task a single process to start. Each pool is `litebase worker --queues …` in a child
process of this one (same process group: a signal to the group reaches all). A signal to this
process is passed on; when either pool exits, the other is stopped and the exit code is
passed up, so a supervisor (ECS, `litebase dev`) sees the failure and restarts the lot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from backend.lib.processes import die_with_parent
from workers.celery_app import JOBS_QUEUE, SYSTEM_QUEUES


def pool_commands(
    concurrency: int, jobs_concurrency: int, pool: str, celery_args: Sequence[str]
) -> list[list[str]]:
    """The command of each pool: the system queues, then the user jobs (nodes ``system@host``
    and ``jobs@host``; name nodes yourself only with --queues, one pool per command)."""
    commands = []
    for name, queues, size in (
        ("system", SYSTEM_QUEUES, concurrency),
        ("jobs", (JOBS_QUEUE,), jobs_concurrency),
    ):
        commands.append(
            [
                *(sys.executable, "-m", "backend.cli", "worker"),
                *("--queues", ",".join(queues), "--concurrency", str(size), "--pool", pool),
                *("--hostname", f"{name}@%h"),
                *celery_args,
            ]
        )
    return commands


def run_pools(
    concurrency: int, jobs_concurrency: int, pool: str, celery_args: Sequence[str]
) -> int:
    """Run both pools until one exits or a signal stops them; the exit code."""
    children = [
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        for argv in pool_commands(concurrency, jobs_concurrency, pool, celery_args)
    ]
    asked_to_stop = False

    def signal_all(signum: int) -> None:
        for child in children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signum)

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        nonlocal asked_to_stop
        asked_to_stop = True
        signal_all(signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        # Blocks until the first pool exits (a signal runs pass_on, then the wait goes on).
        pid, status = os.wait()
        first = os.waitstatus_to_exitcode(status)
        for child in children:
            if child.pid == pid:
                child.returncode = first
        if not asked_to_stop:
            print(
                f"litebase worker: a pool exited with code {first}; stopping the other",
                file=sys.stderr,
                flush=True,
            )
            signal_all(signal.SIGTERM)
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if asked_to_stop:
        return 0 if all(code == 0 for code in codes) else 1
    return first or 1  # a pool that stops unasked is a failure, whatever its code
