"""A connection's collection subscriptions: the view rule and the client's filter as one
predicate (tested on the old record of a delete), the replay of what was missed since
``since``, then live changes, each sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from litestar.exceptions import WebSocketDisconnect

from backend.auth.scopes import check_collection
from backend.collections.compile import Predicate, to_predicate
from backend.collections.expressions import (
    ExpressionError,
    check,
    check_client_filter,
    coerce,
    parse,
)
from backend.collections.rules import auth_context
from backend.collections.spec import Collection
from backend.realtime.fanout import BoundedSubscriber
from backend.realtime.history import count_missed, missed_changes, trimmed_through
from backend.realtime.protocol import ChangeEvent, SubscribeFrame, decode_change, error_frame

if TYPE_CHECKING:
    from backend.realtime.connection import RealtimeConnection

DEDUPE_WINDOW = 10_000


class RecentIds:
    """The last ``size`` ids seen, for spotting re-deliveries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[int] = deque()
        self._set: set[int] = set()

    def __contains__(self, item: object) -> bool:
        return item in self._set

    def add(self, item: int) -> None:
        if item in self._set:
            return
        self._order.append(item)
        self._set.add(item)
        if len(self._order) > self.size:
            self._set.discard(self._order.popleft())


def typed_record(collection: Collection, record: dict[str, Any] | None) -> dict[str, Any]:
    """An outbox record (JSON) with the Python types the predicates compare."""
    if record is None:
        return {}
    typed = dict(record)
    for name, spec in collection.fields.items():
        value = typed.get(name)
        if isinstance(value, str) and spec.kind in ("uuid", "datetime"):
            with contextlib.suppress(ExpressionError):
                typed[name] = coerce(value, spec.kind, 0)
    return typed


@dataclass
class Subscription:
    id: str
    channel: str
    collection: Collection
    filter_text: str | None
    predicate: Predicate
    subscriber: BoundedSubscriber
    # Ids sent lately (replayed or live), so a live one is not sent twice; bounded.
    delivered: RecentIds = field(default_factory=lambda: RecentIds(DEDUPE_WINDOW))
    since: int = 0
    task: asyncio.Task[None] | None = None


def view_predicate(
    connection: RealtimeConnection, collection: Collection, filter_text: str | None
) -> Predicate:
    """What this connection's principal may see of ``collection`` and asked to (the filter)."""
    principal = connection.principal
    assert principal is not None
    hub = connection.hub
    now = hub.clock.now()
    compiled = hub.rules[collection.name]
    auth = auth_context(principal)
    if principal.bypasses_rules:
        rule: Predicate = lambda record: True  # noqa: E731
    elif "view" in compiled.admin_only:
        rule = lambda record: False  # noqa: E731
    else:
        rule = to_predicate(compiled.nodes["view"], collection, auth, now)
    wanted: Predicate = lambda record: True  # noqa: E731
    if filter_text:
        node = parse(filter_text, max_length=connection.settings.filter_max_length)
        if node is not None:
            check(node, collection)
            check_client_filter(node)
            wanted = to_predicate(node, collection, auth, now)
    return lambda record: rule(record) and wanted(record)


async def subscribe_to_collection(
    connection: RealtimeConnection, frame: SubscribeFrame, collection: Collection
) -> None:
    assert connection.principal is not None
    if not check_collection(connection.principal.collections, collection.name):
        await connection.send(
            error_frame("forbidden", "this API key may not use that collection", frame.id)
        )
        return
    try:
        predicate = view_predicate(connection, collection, frame.filter)
    except ExpressionError as exc:
        await connection.send(error_frame("bad_filter", str(exc), frame.id))
        return
    subscriber = await connection.hub.channels.subscribe(frame.channel)
    assert isinstance(subscriber, BoundedSubscriber)
    subscriber.on_overflow = connection.too_slow
    subscription = Subscription(
        id=frame.id,
        channel=frame.channel,
        collection=collection,
        filter_text=frame.filter,
        predicate=predicate,
        subscriber=subscriber,
        since=frame.since or 0,
    )
    connection.subscriptions[frame.id] = subscription
    await connection.send({"type": "subscribed", "id": frame.id})
    if frame.since is not None and not await replay(connection, subscription):
        return
    subscription.task = asyncio.create_task(pump(connection, subscription))


async def replay(connection: RealtimeConnection, subscription: Subscription) -> bool:
    """Send what was missed since ``since``, from the outbox; live events wait queued."""
    reader = connection.hub.reader
    trimmed = await trimmed_through(reader)
    if trimmed is not None and subscription.since < trimmed:
        await connection.send(
            error_frame(
                "history_gone",
                "events that old are no longer kept; fetch the records again, then "
                "subscribe without since",
                subscription.id,
            )
        )
        await drop_subscription(connection, subscription)
        return False
    limit = connection.settings.realtime_replay_max_events
    count = await count_missed(reader, subscription.collection.name, subscription.since, limit)
    if count > limit:
        await connection.send(
            error_frame(
                "replay_too_long",
                f"more than {limit} events were missed (REALTIME_REPLAY_MAX_EVENTS); fetch"
                " the records again, then subscribe without since",
                subscription.id,
            )
        )
        await drop_subscription(connection, subscription)
        return False
    # Every replayed id stays known until live events have passed it.
    subscription.delivered = RecentIds(DEDUPE_WINDOW + count)
    async for event in missed_changes(
        reader, subscription.collection.name, subscription.channel, subscription.since
    ):
        subscription.delivered.add(event.id)
        await deliver(connection, subscription, event)
    return True


async def pump(connection: RealtimeConnection, subscription: Subscription) -> None:
    """Send the live changes of the subscription's channel, skipping any already sent."""
    try:
        async for raw in subscription.subscriber.iter_events():
            event = decode_change(raw)
            if event.id <= subscription.since or event.id in subscription.delivered:
                continue
            if not connection.authorized.is_set():
                await connection.authorized.wait()
            subscription.delivered.add(event.id)
            await deliver(connection, subscription, event)
    except (WebSocketDisconnect, RuntimeError):
        connection.lost()


async def deliver(
    connection: RealtimeConnection, subscription: Subscription, event: ChangeEvent
) -> None:
    shown = event.old if event.op == "delete" else event.record
    if not subscription.predicate(typed_record(subscription.collection, shown)):
        return
    await connection.send(
        {
            "type": "event",
            "sub": subscription.id,
            "channel": subscription.channel,
            "event_id": event.id,
            "op": event.op,
            "record": shown,
        }
    )


async def drop_subscription(connection: RealtimeConnection, subscription: Subscription) -> None:
    connection.subscriptions.pop(subscription.id, None)
    if subscription.task is not None:
        subscription.task.cancel()
    with contextlib.suppress(Exception):
        await connection.hub.channels.unsubscribe(subscription.subscriber)
