"""Tasks only the e2e worker loads (--include), to prove worker behaviour end to end."""

from __future__ import annotations

import os

from celery import shared_task


@shared_task(name="tests.kill_worker_process")
def kill_worker_process() -> None:
    """Dies the way an out-of-memory kill does: no exception, no ack."""
    os._exit(1)
