"""The SQLAlchemy engine inside a worker process: one per process, shared by its tasks.

Job functions that read through SQLAlchemy (summarize_record, import_records) take their
connections from this engine's pool instead of building an engine per job. Built lazily, once
per process and database URL, and disposed when the worker process shuts down
(workers/per_process.py).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from backend.config import Settings
from backend.lib.urls import sync_database_url
from workers.per_process import PerProcess


def _dispose(engine: Engine, same_process: bool) -> None:
    # A child forgets an inherited pool without closing connections its parent still holds.
    engine.dispose(close=same_process)


_engines: PerProcess[Engine] = PerProcess(_dispose)


def worker_engine(settings: Settings) -> Engine:
    """This process's engine for ``settings.database_url``, built on first use."""
    assert settings.database_url is not None
    url = sync_database_url(settings.database_url)
    return _engines.get(
        url,
        lambda: create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_recycle=1800,
            # A worker may sit idle for hours between jobs: test a pooled connection first.
            pool_pre_ping=True,
        ),
    )


def dispose_engine(**_: object) -> None:
    """Dispose of this process's engine now (the worker's shutdown signals do it too)."""
    _engines.shutdown()
