"""The relay consumer that turns committed changes into webhook deliveries for the workers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.collections.spec import CollectionRegistry
from backend.db.transactions import transaction
from backend.events.relay import Consumer, OutboxEvent
from backend.webhooks.service import enqueue_deliveries, record_deliveries


def make_webhook_consumer(app: Any, engine: AsyncEngine) -> Consumer:
    """``engine`` is the app's own (its app.state key differs per app in one process)."""
    celery: Celery = app.state.celery
    registry: CollectionRegistry = app.state.collections

    async def deliver(events: Sequence[OutboxEvent]) -> None:
        # Webhooks are for collections; other tables in the outbox (jobs) cost no query.
        events = [event for event in events if registry.get(event.collection) is not None]
        if not events:
            return
        async with AsyncSession(engine, expire_on_commit=False) as db, transaction(db):
            created = await record_deliveries(db, events)
        # Committed first: a crash here leaves them pending, and beat's webhooks.requeue
        # sends them (a redelivered batch creates no second delivery).
        await enqueue_deliveries(celery, created)

    return deliver
