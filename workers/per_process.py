"""One shared object per worker process, built on first use and closed when the process ends.

The prefork pool forks its children from a parent that never runs tasks, and a child must not
reuse sockets or threads made before the fork, so each object remembers the process id (and
the key, such as a database URL) it was built for and is built again when either changes.
workers/database.py (the SQLAlchemy engine) and workers/gateway.py (the model gateway) use it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from celery.signals import worker_process_shutdown, worker_shutdown

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get(key, build)`` returns this process's object for ``key``. ``release(found,
    same_process)`` lets go of a replaced one: ``same_process`` is False for one inherited
    through a fork, whose connections the parent still uses."""

    def __init__(self, release: Callable[[T, bool], None]) -> None:
        self._release = release
        self._lock = threading.Lock()
        self._current: T | None = None
        self._made_for: tuple[int, Hashable] | None = None
        # Not weak: the bound method would otherwise be the signal's only reference.
        worker_process_shutdown.connect(self.shutdown, weak=False)
        worker_shutdown.connect(self.shutdown, weak=False)

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        wanted = (os.getpid(), key)
        with self._lock:
            if self._current is None or self._made_for != wanted:
                if self._current is not None and self._made_for is not None:
                    self._release(self._current, self._made_for[0] == wanted[0])
                self._current, self._made_for = build(), wanted
            return self._current

    def shutdown(self, **_: Any) -> None:
        with self._lock:
            found, made_for = self._current, self._made_for
            self._current, self._made_for = None, None
        if found is not None and made_for is not None and made_for[0] == os.getpid():
            self._release(found, True)
