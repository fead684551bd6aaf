"""auth.delete_idle_anonymous: delete anonymous users idle past AUTH_ANONYMOUS_IDLE_DAYS
(hourly, from beat), through the account deletion the API uses (``AnonymousUsers``, whose
``AccountDeletion`` DELETE /auth/me goes through too)."""

from __future__ import annotations

import asyncio
from typing import Any

from celery import shared_task
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from backend.auth.anonymous import AnonymousUsers
from backend.auth.core import AuthCore
from backend.auth.revocations import SessionStates
from backend.config import Settings
from backend.db.transactions import transaction
from backend.lib.clock import Clock, SystemClock
from backend.lib.urls import async_database_url
from backend.mail.service import Mailer
from workers.celery_app import LitebaseCelery

DELETE_IDLE_ANONYMOUS_TASK = "auth.delete_idle_anonymous"
BATCH = 100  # users per transaction


@shared_task(name=DELETE_IDLE_ANONYMOUS_TASK, bind=True)
def delete_idle_anonymous(self: Any) -> int:
    """How many idle anonymous users went. Idempotent: a second run finds none of them."""
    app = self.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    return asyncio.run(delete_idle_anonymous_users(app.settings, Mailer(app), SystemClock()))


async def delete_idle_anonymous_users(settings: Settings, mailer: Mailer, clock: Clock) -> int:
    """Every idle anonymous user, a batch per transaction; their sessions' revocations reach
    the API processes through Redis, as when one deletes an account."""
    assert settings.database_url is not None and settings.redis_url is not None
    engine = create_async_engine(async_database_url(settings.database_url), poolclass=NullPool)
    redis = Redis.from_url(settings.redis_url)
    states = SessionStates(settings.session_cache_seconds)  # this process serves no requests
    total = 0
    try:
        while True:
            async with AsyncSession(engine, expire_on_commit=False) as db, transaction(db):
                core = AuthCore(db, redis, settings, clock, mailer, states)
                deleted = await AnonymousUsers.over(core).delete_idle_anonymous(BATCH)
            total += deleted
            if deleted < BATCH:
                return total
    finally:
        await redis.aclose()
        await engine.dispose()
