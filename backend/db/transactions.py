"""Who commits: the one who opened the session, never the logic it calls.

docs/decisions/0011-one-owner-of-the-transaction.md. A request's ``db_session`` is one
transaction, committed by ``request_session`` once the handler has returned (before the
answer is sent, so a failed commit is answered as an error) and rolled back when the handler
raises. Code that opens a session of its own (a background task, the realtime hub's sign-in
check) owns it the same way, through ``owned_session``. Services flush when they need the
database's answer (an id, a unique constraint) and never call ``commit()`` or ``rollback()``.

What must wait for the commit (a Celery message naming a new row, a Redis mirror, a mail) is
registered with ``after_commit`` and runs once the commit has succeeded; a rollback drops it.
A refusal that is itself a change (a replayed refresh token signs its session out) raises its
domain error with ``keep_changes=True``: the owner commits what was done, then answers with
the error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.errors import DomainError

log = logging.getLogger(__name__)

_AFTER_COMMIT = "litebase.after_commit"

Effect = Callable[[], Awaitable[Any]]


def after_commit(db: AsyncSession, effect: Effect) -> None:
    """Run ``effect`` once this session's transaction has committed (never if it rolls back)."""
    db.info.setdefault(_AFTER_COMMIT, []).append(effect)


async def commit(db: AsyncSession) -> None:
    """The owner's commit: the transaction, then what waited for it, in order."""
    effects: list[Effect] = db.info.pop(_AFTER_COMMIT, [])
    await db.commit()
    for effect in effects:
        await effect()


async def rollback(db: AsyncSession) -> None:
    db.info.pop(_AFTER_COMMIT, None)
    await db.rollback()


@asynccontextmanager
async def transaction(db: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Own ``db``'s transaction for the block: commit when it ends, roll back when it raises
    (commit first when the error keeps its changes)."""
    try:
        yield db
    except DomainError as error:
        await (commit(db) if error.keep_changes else rollback(db))
        raise
    except BaseException:
        await rollback(db)
        raise
    await commit(db)


@asynccontextmanager
async def owned_session(database: Any) -> AsyncIterator[AsyncSession]:
    """A session of its own from the app's ``SQLAlchemyAsyncConfig``, one transaction."""
    async with database.get_session() as db, transaction(db):
        yield db


async def request_session(transaction_session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """The ``db_session`` dependency: the plugin's session for the request, one transaction."""
    async with transaction(transaction_session):
        yield transaction_session
