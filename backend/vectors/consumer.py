"""The relay consumer that sends changed records of embedded collections to the workers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from celery import Celery

from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.events.relay import Consumer, OutboxEvent
from backend.vectors import EMBED_TASK


def embedding_batches(
    registry: CollectionRegistry, events: Sequence[OutboxEvent], size: int
) -> list[tuple[str, list[str]]]:
    """(collection, record ids) batches of at most ``size`` ids, each id once, in event order.

    Deletes are sent too: the worker finds the record gone and forgets its state.
    """
    ids: dict[str, dict[str, None]] = {}
    for event in events:
        collection = registry.get(event.collection)
        if collection is not None and collection.embed is not None:
            ids.setdefault(collection.name, {})[event.record_id] = None
    batches = []
    for name, found in ids.items():
        ordered = list(found)
        batches += [(name, ordered[i : i + size]) for i in range(0, len(ordered), size)]
    return batches


def make_embedding_consumer(app: Any) -> Consumer:
    registry: CollectionRegistry = app.state.collections
    celery: Celery = app.state.celery
    settings: Settings = app.state.settings

    async def enqueue(events: Sequence[OutboxEvent]) -> None:
        for name, record_ids in embedding_batches(
            registry, events, settings.embedding_batch_records
        ):
            await asyncio.to_thread(celery.send_task, EMBED_TASK, args=[name, record_ids])

    return enqueue
