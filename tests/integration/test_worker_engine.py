"""workers/database.py: one SQLAlchemy engine per worker process, its own after a fork,
disposed when the worker process shuts down."""

from __future__ import annotations

import os

from celery.signals import worker_process_shutdown
from sqlalchemy import text

from workers.database import worker_engine


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
