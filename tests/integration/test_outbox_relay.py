"""The outbox relay on real Postgres: order, gaps, positions, leadership and failover."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from backend.events.relay import RELAY_LOCK_KEY, OutboxRelay
from backend.lib.urls import libpq_database_url


class Recorder:
    """A consumer that keeps what it is handed, and can be told to fail."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.fail_next = 0

    async def __call__(self, events) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("consumer failure")
        self.ids += [event.id for event in events]

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        await until(lambda: len(set(self.ids)) >= count, timeout)


async def until(condition, timeout: float = 20) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
def url(database_url) -> str:
    return libpq_database_url(database_url)


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _outbox_ids(url: str) -> list[int]:
    with _connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM outbox ORDER BY id")]


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


NEW_NOTE = (
    "INSERT INTO notes (id, title, created_at, updated_at)"
    " VALUES (gen_random_uuid(), %s, now(), now())"
)


def _relay(url: str, consumer, **options) -> OutboxRelay:
    options = {"poll_interval": 0.05, "standby_interval": 0.1, **options}
    return OutboxRelay(url, [consumer], **options)


def _insert_notes(url: str, count: int) -> None:
    with _connect(url) as conn:
        conn.execute(
            "INSERT INTO notes (id, title, created_at, updated_at)"
            " SELECT gen_random_uuid(), 'n' || g, now(), now() FROM generate_series(1, %s) g",
            (count,),
        )


async def test_changes_are_handed_on_in_order_and_the_position_is_kept(url):
    recorder = Recorder()
    async with running(_relay(url, recorder, batch_size=7)):
        _insert_notes(url, 30)
        await recorder.wait_for(30)
    assert recorder.ids == _outbox_ids(url)

    # A new relay resumes from the stored position: nothing twice, nothing missed.
    again = Recorder()
    async with running(_relay(url, again)):
        _insert_notes(url, 5)
        await again.wait_for(5)
        # A later change arrives after anything handed on twice would have: then check.
        _insert_notes(url, 1)
        await again.wait_for(6)
    assert again.ids == _outbox_ids(url)[30:]


async def test_overlapping_transactions_committing_out_of_order(url):
    recorder = Recorder()
    async with running(_relay(url, recorder)) as relay:
        with _connect(url) as first, _connect(url) as second:
            first.execute("BEGIN")
            first.execute(NEW_NOTE, ("first",))
            second.execute(NEW_NOTE, ("second",))
            # The relay has read the outbox three times since the second commit...
            seen = relay.reads
            await until(lambda: relay.reads >= seen + 3)
            # ... and held it back while the first (lower id) is in flight.
            assert recorder.ids == []
            first.execute("COMMIT")
        await recorder.wait_for(2)
    assert recorder.ids == _outbox_ids(url)


async def test_a_transaction_with_an_early_xid_and_a_late_id_is_not_skipped(url):
    """xid order and id order can disagree; the horizon catches the late one."""
    recorder = Recorder()
    insert = NEW_NOTE
    async with running(_relay(url, recorder)):
        with _connect(url) as oldest, _connect(url) as early, _connect(url) as late:
            for conn in (oldest, early, late):
                conn.execute("BEGIN")
            oldest.execute("SELECT pg_current_xact_id()")  # holds the horizon
            early.execute("SELECT pg_current_xact_id()")  # xid before late's ...
            late.execute(insert, ("late xid, low id",))  # ... but takes the lower id
            early.execute(insert, ("early xid, high id",))
            early.execute("COMMIT")
            oldest.execute("COMMIT")
            # Now early's row (higher id, older xid) is handed on while late is in flight.
            await recorder.wait_for(1)
            late.execute("COMMIT")
        await recorder.wait_for(2)
    ids = _outbox_ids(url)
    assert sorted(recorder.ids) == ids
    assert len(recorder.ids) == 2


async def test_a_rolled_back_transaction_leaves_no_event_and_no_stall(url):
    recorder = Recorder()
    async with running(_relay(url, recorder)):
        with _connect(url) as conn:
            conn.execute("BEGIN")
            conn.execute(NEW_NOTE, ("ghost",))
            conn.execute("ROLLBACK")
        _insert_notes(url, 1)
        await recorder.wait_for(1)
    assert recorder.ids == _outbox_ids(url)


async def test_only_one_relay_leads(url):
    a, b = Recorder(), Recorder()
    async with running(_relay(url, a)) as first, running(_relay(url, b)) as second:
        await until(lambda: first.is_leader or second.is_leader)
        assert [first.is_leader, second.is_leader].count(True) == 1
        _insert_notes(url, 10)
        await until(lambda: len(set(a.ids) | set(b.ids)) >= 10)
        # One more after them: anything the other handed on too would have come by now.
        _insert_notes(url, 1)
        await until(lambda: len(set(a.ids) | set(b.ids)) >= 11)
    assert sorted(a.ids + b.ids) == _outbox_ids(url)


async def test_a_failing_consumer_gets_the_events_again(url):
    recorder = Recorder()
    recorder.fail_next = 2
    async with running(_relay(url, recorder)):
        _insert_notes(url, 3)
        await recorder.wait_for(3)
    assert recorder.ids == _outbox_ids(url)


async def test_the_standby_takes_over_when_the_leader_dies_mid_stream(url):
    """Kill the leader's connection (as a crashed process would lose it) during 1,000 writes."""
    a, b = Recorder(), Recorder()
    async with (
        running(_relay(url, a, batch_size=50)) as first,
        running(_relay(url, b, batch_size=50)) as second,
    ):
        await until(lambda: first.is_leader or second.is_leader)
        writer = asyncio.create_task(asyncio.to_thread(_write_slowly, url, 1000))
        await until(lambda: len(a.ids) + len(b.ids) > 0)  # mid-stream: events are flowing
        with _connect(url) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND objid = %s::bigint %% 4294967296 AND granted",
                (RELAY_LOCK_KEY,),
            ).fetchall()
        assert killed, "the leader held no advisory lock"
        await writer
        everything = set(_outbox_ids(url))
        await until(lambda: set(a.ids) | set(b.ids) == everything, 30)
    assert len(everything) == 1000


def _write_slowly(url: str, count: int) -> None:
    with _connect(url) as conn:
        for start in range(0, count, 20):
            conn.execute(
                "INSERT INTO notes (id, title, created_at, updated_at)"
                " SELECT gen_random_uuid(), 'n' || g, now(), now()"
                " FROM generate_series(%s::int, %s::int) g",
                (start, start + 19),
            )
