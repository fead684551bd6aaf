"""The relay consumer that publishes committed changes to every API process's sockets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.channels import ChannelsPlugin

from backend.collections.spec import CollectionRegistry
from backend.events.relay import Consumer, OutboxEvent
from backend.realtime.service import change_to_publish, job_update


def make_realtime_consumer(app: Any) -> Consumer:
    channels = app.plugins.get(ChannelsPlugin)
    registry: CollectionRegistry = app.state.collections

    async def publish(events: Sequence[OutboxEvent]) -> None:
        for event in events:
            if event.collection == "jobs" and event.record is not None:
                data, channel = job_update(event.record)
                await channels.wait_published(data, [channel])
                continue
            collection = registry.get(event.collection)
            if collection is not None and collection.realtime:
                data, channel = change_to_publish(event)
                await channels.wait_published(data, [channel])

    return publish
