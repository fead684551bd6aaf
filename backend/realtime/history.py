"""What a subscriber missed since an event id (the ``since`` of a subscribe), read back from
the outbox in order, and whether history that old is still kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import func, select

from backend.collections.reads import Reader
from backend.db.outbox import outbox_table, relay_state_table
from backend.realtime.protocol import ChangeEvent

REPLAY_PAGE = 1000
TRIMMED_STATE = "trimmed"  # outbox_relay_state row: ids up to last_id were trimmed away

_OUTBOX, _STATE = outbox_table, relay_state_table


async def trimmed_through(reader: Reader) -> int | None:
    """The last event id trimmed from the outbox, if any was."""
    trimmed: int | None = await reader.scalar(
        select(_STATE.c.last_id).where(_STATE.c.name == TRIMMED_STATE)
    )
    return trimmed


async def count_missed(reader: Reader, collection: str, since: int, limit: int) -> int:
    """How many changes of ``collection`` came after ``since``, counted up to ``limit + 1``."""
    missed = select(_OUTBOX.c.id).where(_OUTBOX.c.collection == collection, _OUTBOX.c.id > since)
    count = await reader.scalar(
        select(func.count()).select_from(missed.limit(limit + 1).subquery())
    )
    return count or 0


async def missed_changes(
    reader: Reader, collection: str, channel: str, since: int
) -> AsyncIterator[ChangeEvent]:
    """The changes of ``collection`` after ``since``, oldest first, read a page at a time."""
    after = since
    while True:
        rows = await reader.rows(
            select(_OUTBOX)
            .where(_OUTBOX.c.collection == collection, _OUTBOX.c.id > after)
            .order_by(_OUTBOX.c.id)
            .limit(REPLAY_PAGE)
        )
        for row in rows:
            yield ChangeEvent(
                channel=channel,
                id=row["id"],
                op=row["op"],
                record_id=row["record_id"],
                record=row["record"],
                old=row["old"],
            )
        if len(rows) < REPLAY_PAGE:
            return
        after = rows[-1]["id"]
