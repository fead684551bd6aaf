"""Transaction-scoped Postgres advisory locks: one writer at a time per subject.

A cap checked by counting rows and then inserting one ("at most 10 active jobs") lets
concurrent requests all count the same rows and all insert (issue 18.15). Taking the
subject's lock before counting makes them take turns; the lock ends with the transaction.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


async def lock_subject(db: AsyncSession, kind: str, subject: object) -> None:
    """Hold ``kind``'s lock on ``subject`` (a user id, "all") until this transaction ends."""
    await db.execute(_LOCK, {"key": f"litebase {kind} {subject}"})
