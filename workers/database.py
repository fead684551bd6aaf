"""The SQLAlchemy engine inside a worker process: one per process, shared by its tasks.

Job functions that read through SQLAlchemy (summarize_record, import_records) take their
connections from this engine's pool instead of building an engine per job. Built lazily and
per process id, like the gateway (workers/gateway.py): the prefork pool forks its children from
a parent that never runs tasks, and a child must not reuse connections made before the fork.
Disposed when the worker process shuts down.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from celery.signals import worker_process_shutdown, worker_shutdown
from sqlalchemy import Engine, create_engine

from backend.config import Settings
from backend.lib.urls import sync_database_url

_lock = threading.Lock()
_engine: Engine | None = None
_made_for: tuple[int, str] | None = None  # the process id and database URL it was built for


def worker_engine(settings: Settings) -> Engine:
    """This process's engine for ``settings.database_url``, built on first use."""
    global _engine, _made_for
    assert settings.database_url is not None
    wanted = (os.getpid(), sync_database_url(settings.database_url))
    with _lock:
        if _engine is None or _made_for != wanted:
            if _engine is not None and _made_for is not None:
                # Made before a fork, or for another database: a child forgets the inherited
                # pool without closing connections its parent still holds.
                _engine.dispose(close=_made_for[0] == wanted[0])
            _engine = create_engine(
                wanted[1],
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                pool_recycle=1800,
                # A worker may sit idle for hours between jobs: test a pooled connection first.
                pool_pre_ping=True,
            )
            _made_for = wanted
        return _engine


@worker_process_shutdown.connect
@worker_shutdown.connect
def dispose_engine(**_: Any) -> None:
    global _engine, _made_for
    with _lock:
        found, made_for = _engine, _made_for
        _engine, _made_for = None, None
    if found is not None and made_for is not None and made_for[0] == os.getpid():
        found.dispose()
