"""workers/database.py: one SQLAlchemy engine per worker process, its own after a fork,
disposed when the worker process shuts down."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from celery.signals import worker_process_shutdown
from sqlalchemy import text

from workers.database import connection, worker_engine


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_process_keeps_one_engine_and_reuses_its_connection(settings):
    try:
        engine = worker_engine(settings)
        first = _backend_pid(engine)
        assert worker_engine(settings) is engine
        assert _backend_pid(worker_engine(settings)) == first  # pooled, not a new connection
    finally:
        worker_process_shutdown.send(sender=None)


def test_a_forked_child_builds_its_own_engine_and_leaves_the_parents_alone(settings):
    try:
        engine = worker_engine(settings)
        before = _backend_pid(engine)
        child = os.fork()
        if child == 0:  # the child, as a prefork pool process: it must not touch the socket
            try:
                own = worker_engine(settings)
                ok = own is not engine and _backend_pid(own) != before
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert worker_engine(settings) is engine
        assert _backend_pid(engine) == before  # the parent's connection survived the child
    finally:
        worker_process_shutdown.send(sender=None)


def test_the_engine_is_disposed_when_the_worker_process_shuts_down(settings):
    engine = worker_engine(settings)
    _backend_pid(engine)
    assert engine.pool.checkedin() == 1
    worker_process_shutdown.send(sender=None)
    assert engine.pool.checkedin() == 0
    try:
        assert worker_engine(settings) is not engine
    finally:
        worker_process_shutdown.send(sender=None)


def test_tasks_borrow_psycopg_connections_from_the_pool(settings):
    try:
        with connection(settings) as conn:
            assert conn.autocommit
            first = conn.execute("SELECT pg_backend_pid()").fetchone()
        with connection(settings) as conn:  # the next task run: the same connection, no new one
            assert conn.execute("SELECT pg_backend_pid()").fetchone() == first
        engine = worker_engine(settings)
        assert engine.pool.checkedin() == 1
        assert _backend_pid(engine) == first[0]  # handed back as SQLAlchemy lends them
    finally:
        worker_process_shutdown.send(sender=None)


def test_a_transaction_block_commits_at_its_end_and_rolls_back_when_it_raises(settings):
    table = f"pooled_{uuid.uuid4().hex[:8]}"
    try:
        with connection(settings) as conn:
            conn.execute(f"CREATE TABLE {table} (n int)")
        with connection(settings, autocommit=False) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises(RuntimeError), connection(settings, autocommit=False) as conn:
            conn.execute(f"INSERT INTO {table} VALUES (2)")
            raise RuntimeError("the task failed")
        with connection(settings) as conn:
            assert conn.execute(f"SELECT array_agg(n) FROM {table}").fetchone() == ([1],)
            conn.execute(f"DROP TABLE {table}")
    finally:
        worker_process_shutdown.send(sender=None)


def test_a_connection_the_database_ended_is_not_lent_again(settings):
    try:
        with connection(settings) as conn:
            doomed = conn.execute("SELECT pg_backend_pid()").fetchone()
        with connection(settings) as conn, pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        with connection(settings) as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone() != doomed
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        worker_process_shutdown.send(sender=None)
