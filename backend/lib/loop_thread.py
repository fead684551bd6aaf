"""An asyncio event loop in a daemon thread, for synchronous code that uses async clients.

Celery tasks and ``litebase reindex`` are synchronous; the model transport (aiohttp) and the
gateway are async. A ``LoopThread`` starts its loop on first use and keeps it, so clients made
on it keep their connections between calls; any number of threads may ``call`` at once. A
process forked from one that had started the loop (the prefork pool) starts its own: the
thread did not survive the fork.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @property
    def running(self) -> bool:
        """Whether this process's loop thread is alive."""
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None) -> T:
        """Run a coroutine on the loop and wait for its result (at most ``timeout`` seconds).

        If the caller is stopped while it waits (a task's soft time limit), the coroutine is
        cancelled, so it can clean up (the gateway settles the call, a stream is closed).
        """
        future = asyncio.run_coroutine_threadsafe(make(), self._running())
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def close(self, timeout: float = 10) -> None:
        """Stop the loop and wait for its thread (close clients on it with ``call`` first)."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or thread is None or pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout)
