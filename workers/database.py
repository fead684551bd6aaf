"""The database inside a worker process: one SQLAlchemy engine per process, shared by its tasks.

Every task takes its connections from this engine's pool: job functions that read through
SQLAlchemy (summarize_record, import_records) by ``worker_engine(settings).connect()``, the
tasks that speak psycopg (the job runner, deliveries, embeddings, trims) by ``connection()``.
Built lazily, once per process and database URL, and disposed when the worker process shuts
down (workers/per_process.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
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


@contextmanager
def connection(settings: Settings, *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    """A psycopg connection from this process's pool, for a task's run.

    ``autocommit`` (the default): each statement commits on its own. Otherwise the block is one
    transaction, committed when it ends and rolled back when it raises, as ``with
    psycopg.connect()`` does. The connection goes back to the pool idle and out of autocommit, as
    SQLAlchemy lends them; one the database broke is thrown away instead.
    """
    pooled = worker_engine(settings).raw_connection()
    conn = pooled.driver_connection
    assert isinstance(conn, psycopg.Connection)
    try:
        _idle(conn)  # the pool's liveness ping may have left a transaction open
        conn.autocommit = autocommit
        yield conn
        if not autocommit:
            conn.commit()
    finally:
        if conn.closed or conn.broken:
            pooled.invalidate()
        else:
            _idle(conn)
            conn.autocommit = False
        pooled.close()


def _idle(conn: psycopg.Connection) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
