"""The relay consumer that turns committed changes into webhook deliveries for the workers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.collections.spec import CollectionRegistry
from backend.events.relay import Consumer, OutboxEvent
from backend.webhooks.service import enqueue_deliveries, record_deliveries


def make_webhook_consumer(app: Any) -> Consumer:
    celery: Celery = app.state.celery
    registry: CollectionRegistry = app.state.collections

    async def deliver(events: Sequence[OutboxEvent]) -> None:
        # Webhooks are for collections; other tables in the outbox (jobs) cost no query.
        events = [event for event in events if registry.get(event.collection) is not None]
        if not events:
            return
        # The engine exists once the SQLAlchemy plugin has started, after this is built; its
        # state key is unique per app, so ask the config rather than a fixed key.
        engine: AsyncEngine = app.state.database.get_engine()
        async with AsyncSession(engine, expire_on_commit=False) as db:
            created = await record_deliveries(db, events)
        # Committed first: a crash here leaves them pending, and beat's webhooks.requeue
        # sends them (a redelivered batch creates no second delivery).
        await enqueue_deliveries(celery, created)

    return deliver
