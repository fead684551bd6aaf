"""The fan-out of committed changes to every API process's sockets: the relay consumer
publishes each change (and each job's progress) on its channel through Redis, and each process
queues what arrives for each subscription, bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from litestar.channels import ChannelsPlugin, Subscriber

from backend.collections.spec import CollectionRegistry
from backend.events.relay import Consumer, OutboxEvent
from backend.realtime.protocol import ChangeEvent, encode


class BoundedSubscriber(Subscriber):
    """A channels subscriber that says when its queue overflowed, instead of dropping quietly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.overflowed = asyncio.Event()
        self.on_overflow: Callable[[], None] | None = None

    def put_nowait(self, item: bytes | None) -> bool:
        if super().put_nowait(item):
            return True
        if not self.overflowed.is_set():
            self.overflowed.set()
            if self.on_overflow is not None:
                # At once, not when the sender next looks: it may be stuck writing to this client.
                self.on_overflow()
        return False


def change_to_publish(event: Any) -> tuple[bytes, str]:
    """An outbox event as the bytes and the channel the relay publishes."""
    channel = f"collection:{event.collection}"
    change = ChangeEvent(
        channel=channel,
        id=event.id,
        op=event.op,
        record_id=event.record_id,
        record=event.record,
        old=event.old,
    )
    return encode(change), channel


def job_update(job: dict[str, Any]) -> tuple[bytes, str]:
    """A jobs row (from the outbox) as the message on ``job:<id>``."""
    message = {
        "kind": "job",
        "job_id": str(job["id"]),
        "status": job["status"],
        "progress": job["progress"],
        "result": job.get("result") if job["status"] == "succeeded" else None,
        "error": job.get("error") if job["status"] == "failed" else None,
    }
    return encode(message), f"job:{job['id']}"


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
