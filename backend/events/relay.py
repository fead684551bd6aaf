"""The outbox relay: hands every committed change, once written, to the registered consumers.

One API process per deployment leads (it holds a Postgres advisory lock on its own
connection); the others stand by and take over within seconds if the leader's connection
dies. The leader wakes on NOTIFY, or polls as a fallback, and reads the outbox from its stored
position, so a crash re-delivers rather than loses (at-least-once; consumers dedupe by id).

The position is (``last_id``, ``horizon``). Only rows of transactions older than every
transaction still in flight are read, in id order, so a gap left by an uncommitted id is never
stepped over. ``horizon`` is that bound at the last read: rows of transactions at or past it
are read next time whatever their id, which catches the rare transaction that took its xid
early and its id late. See docs/decisions/0002-outbox-relay-position.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from backend.db.outbox import NOTIFY_CHANNEL
from backend.lib.tracing import span_continuing

log = logging.getLogger(__name__)

# pg_try_advisory_lock key: "litebase outbox relay" folded into a bigint.
RELAY_LOCK_KEY = 0x11BE_0B0C_5E1A_0001


class OutboxEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    collection: str
    op: str
    record_id: str
    record: dict[str, Any] | None
    old: dict[str, Any] | None
    created_at: datetime
    # The writer's W3C trace context, when it was traced (backend/events/tracing.py).
    traceparent: str | None = None


Consumer = Callable[[Sequence[OutboxEvent]], Awaitable[None]]

# One statement, one snapshot: the horizon (oldest transaction still in flight) and the rows
# to hand on. Rows of transactions at or past the horizon wait, so ids are handed on in order;
# rows of transactions that were past the previous horizon are read whatever their id, so a
# transaction that took a low id and committed late is still handed on (never skipped).
_READ = """
WITH snap AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
SELECT
    (SELECT horizon::text::bigint FROM snap) AS horizon,
    coalesce(
        (SELECT json_agg(r ORDER BY r.id) FROM (
            SELECT id, collection, op, record_id, record, old, created_at, traceparent
            FROM outbox, snap
            WHERE (id > $1 OR xid >= $2::text::xid8) AND xid < snap.horizon
            ORDER BY id
            LIMIT $3
        ) r),
        '[]'
    ) AS events
"""


class OutboxRelay:
    def __init__(
        self,
        database_url: str,
        consumers: Sequence[Consumer],
        *,
        name: str = "default",
        batch_size: int = 500,
        poll_interval: float = 1.0,
        standby_interval: float = 2.0,
    ) -> None:
        self.database_url = database_url
        self.consumers = list(consumers)
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.standby_interval = standby_interval
        self.is_leader = False
        self.reads = 0  # outbox reads made while leading: how far it has looked, for tests
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Lead when possible, stand by otherwise, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self._lead_or_wait(stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A lost connection or a failing consumer: let go of the lead (the position
                # was not moved past what failed), pause, and try again.
                log.exception("outbox relay %r stopped leading; retrying", self.name)
            finally:
                self.is_leader = False
            await _sleep_unless(stop, self.standby_interval)

    async def _lead_or_wait(self, stop: asyncio.Event) -> None:
        # Named, so pg_stat_activity shows which process leads.
        connection = await asyncpg.connect(
            self.database_url,
            server_settings={"application_name": f"litebase relay pid={os.getpid()}"},
        )
        try:
            while not stop.is_set():
                if await connection.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                    break
                await _sleep_unless(stop, self.standby_interval)
            else:
                return
            self.is_leader = True
            log.info("outbox relay %r leads", self.name)
            await connection.add_listener(NOTIFY_CHANNEL, self._notified)
            await self._lead(connection, stop)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    def _notified(self, *_args: object) -> None:
        self._wake.set()

    async def _lead(self, connection: asyncpg.Connection, stop: asyncio.Event) -> None:
        last_id, horizon = await self._load_position(connection)
        while not stop.is_set():
            self._wake.clear()
            row = await connection.fetchrow(_READ, last_id, str(horizon), self.batch_size)
            self.reads += 1
            assert row is not None
            events = msgspec.json.decode(row["events"], type=list[OutboxEvent])
            if events:
                await self._hand_on(events)
                last_id = max(last_id, events[-1].id)
            if events or row["horizon"] != horizon:
                horizon = int(row["horizon"])
                await self._save_position(connection, last_id, horizon)
            if len(events) < self.batch_size:
                # Caught up: wait for a NOTIFY, or poll (also to see in-flight ones finish).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stop), self.poll_interval)

    async def _hand_on(self, events: Sequence[OutboxEvent]) -> None:
        # Traced, the batch's span continues its writer's trace (one writer) or links to
        # each (several), and the tasks the consumers send carry it on to the workers.
        with span_continuing(
            "outbox hand-off",
            (event.traceparent for event in events),
            {"litebase.outbox.events": len(events), "litebase.outbox.last_id": events[-1].id},
        ):
            for consumer in self.consumers:
                await consumer(events)

    async def _wait(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            woken.cancel()

    async def _load_position(self, connection: asyncpg.Connection) -> tuple[int, int]:
        row = await connection.fetchrow(
            "SELECT last_id, horizon FROM outbox_relay_state WHERE name = $1", self.name
        )
        if row is None:
            return 0, 0
        return int(row["last_id"]), int(row["horizon"])

    async def _save_position(
        self, connection: asyncpg.Connection, last_id: int, horizon: int
    ) -> None:
        await connection.execute(
            """
            INSERT INTO outbox_relay_state (name, last_id, horizon, updated_at)
            VALUES ($1, $2, $3, now())
            ON CONFLICT (name) DO UPDATE
            SET last_id = excluded.last_id, horizon = excluded.horizon, updated_at = now()
            """,
            self.name,
            last_id,
            horizon,
        )


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
