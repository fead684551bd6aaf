"""Realtime connections: authenticate, subscribe to collection changes under the view rule,
resume from the outbox with no gap and no duplicate, and never let a socket grow without bound.

Changes reach every API process through litestar.channels (Redis backend): the relay leader
publishes each committed change on ``collection:<name>``; each process filters it per
subscriber with the collection's view rule (the old record for deletes) and the client's filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import msgspec
from litestar import WebSocket
from litestar.channels import ChannelsPlugin, Subscriber
from litestar.exceptions import WebSocketDisconnect
from sqlalchemy import func, select

from backend.auth.revocations import AccessChange
from backend.auth.scopes import check_collection, may_write
from backend.collections.compile import AuthContext, Predicate, to_predicate
from backend.collections.expressions import (
    ExpressionError,
    check,
    check_client_filter,
    coerce,
    parse,
)
from backend.collections.reads import Reader
from backend.collections.rules import CompiledRules
from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.db.outbox import outbox_table, relay_state_table
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.realtime.protocol import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    AuthFrame,
    BroadcastFrame,
    ChangeEvent,
    PingFrame,
    PresenceFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    decode_change,
    decode_client_frame,
    encode,
    error_frame,
)
from backend.realtime.rooms import Presence, room_channel, user_channel

log = logging.getLogger(__name__)

REPLAY_PAGE = 1000
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


TRIMMED_STATE = "trimmed"  # outbox_relay_state row: ids up to last_id were trimmed away


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


@dataclass
class RoomSubscription:
    """A room (``room:<name>``, broadcast and presence) or ``user:<id>`` push channel."""

    id: str
    channel: str  # as the client named it
    internal: str  # as published (rooms are scoped by org)
    subscriber: BoundedSubscriber
    echo: bool
    joined: bool = False
    task: asyncio.Task[None] | None = None


class RealtimeHub:
    """What every connection of this process shares, and the sockets by session."""

    def __init__(
        self,
        *,
        settings: Settings,
        channels: ChannelsPlugin,
        registry: CollectionRegistry,
        rules: dict[str, CompiledRules],
        reader: Reader,
        clock: Clock,
        authenticate: Callable[[str], Any],
        presence: Presence,
    ) -> None:
        self.presence = presence
        self.settings = settings
        self.channels = channels
        self.registry = registry
        self.rules = rules
        self.reader = reader
        self.clock = clock
        self.authenticate = authenticate
        self.by_session: dict[UUID, set[RealtimeConnection]] = {}
        self.connections: set[RealtimeConnection] = set()

    async def keep_presence(self, stop: asyncio.Event) -> None:
        """Refresh this process's presence entries; expire those of dead processes."""
        interval = self.settings.realtime_presence_ttl_seconds / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            rooms: dict[str, list[str]] = {}
            for connection in list(self.connections):
                for room in connection.rooms.values():
                    keys = rooms.setdefault(room.internal, [])
                    if room.joined:
                        keys.append(connection.key)
            for channel, keys in rooms.items():
                try:
                    await self.presence.refresh(channel, keys)
                    await self.presence.prune(channel)
                except Exception:
                    log.exception("presence heartbeat failed for %s", channel)

    def session_revoked(self, session_id: UUID) -> None:
        for connection in list(self.by_session.get(session_id, ())):
            connection.end(CLOSE_UNAUTHORIZED, "the session was signed out")

    def access_changed(self, change: AccessChange) -> None:
        """A key was revoked, a user's keys were, or a user left an org: close the sockets
        that were relying on it (the client may connect again with what it still holds)."""
        kind, ids = change
        for connection in list(self.connections):
            principal = connection.principal
            if principal is None:
                continue
            if (kind == "key" and principal.api_key_id == ids[0]) or (
                kind == "keys" and principal.api_key_id and principal.user_id == ids[0]
            ):
                connection.end(CLOSE_UNAUTHORIZED, "the API key was revoked")
            elif kind == "member" and (principal.user_id, principal.org_id) == ids:
                connection.end(CLOSE_UNAUTHORIZED, "no longer a member of the org")

    def allows_origin(self, origin: str | None) -> bool:
        if origin is None:  # not a browser: nothing to hijack
            return True
        public = self.settings.public_url.rstrip("/")
        allowed = {o.rstrip("/") for o in self.settings.cors_origins} | {public}
        return origin.rstrip("/") in allowed or "*" in allowed


class RealtimeConnection:
    def __init__(self, socket: WebSocket[Any, Any, Any], hub: RealtimeHub) -> None:
        self.socket = socket
        self.hub = hub
        self.settings = hub.settings
        self.principal: Principal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.rooms: dict[str, RoomSubscription] = {}
        self.key = uuid4().hex  # this socket, in presence and as a broadcast's origin
        self.authorized = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._closing: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._tokens = float(self.settings.realtime_frames_per_second * 2)
        self._refilled = time.monotonic()
        self._expiry_task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        await self.socket.accept()
        try:
            first = await asyncio.wait_for(
                self._receive(), self.settings.realtime_auth_timeout_seconds
            )
        except TimeoutError:
            await self._close(CLOSE_UNAUTHORIZED, "send an auth frame first")
            return
        except WebSocketDisconnect:
            return
        if not isinstance(first, AuthFrame) or not await self._authenticate(first.token):
            await self._close(CLOSE_UNAUTHORIZED, "the first frame must be a valid auth frame")
            return
        assert self.principal is not None
        ready = {
            "type": "ready",
            "user": {
                "id": self.principal.user_id,
                "role": self.principal.role,
                "org": self.principal.org_id,
            },
        }
        try:
            await self.send(ready)
        except WebSocketDisconnect:
            await self._cleanup()
            if self._closing is not None:
                await self._close(*self._closing)
            return
        self.hub.connections.add(self)
        receiver = asyncio.create_task(self._receive_loop())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait({receiver, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            receiver.cancel()
            closed.cancel()
            await self._cleanup()
            if self._closing is not None:
                await self._close(*self._closing)

    def end(self, code: int, reason: str) -> None:
        """Close this connection from elsewhere (a revocation, a slow subscription)."""
        if self._closing is None:
            self._closing = (code, reason)
        self._closed.set()

    async def _cleanup(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        self.hub.connections.discard(self)
        for subscription in list(self.subscriptions.values()):
            await self._drop(subscription)
        for room in list(self.rooms.values()):
            await self._leave_room(room)
        if self.principal is not None and self.principal.session_id is not None:
            self.hub.by_session.get(self.principal.session_id, set()).discard(self)

    async def _close(self, code: int, reason: str) -> None:
        # Bounded: under plain uvicorn a close waits until the client takes what was sent.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.socket.close(code=code, reason=reason),
                self.settings.realtime_send_timeout_seconds,
            )

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame; a client that takes nothing for the send timeout is closed 4008.

        The queue limit alone does not catch a client that stopped reading: with few events
        the queue never fills, it just waits behind a send stuck on the full TCP buffer.
        """
        timeout = self.settings.realtime_send_timeout_seconds
        async with self._send_lock:
            try:
                async with asyncio.timeout(timeout):  # no task per send, unlike wait_for
                    await self.socket.send_text(encode(frame).decode())
            except TimeoutError:
                self.end(CLOSE_TOO_SLOW, f"too slow: nothing taken for {timeout:g} s")
                raise WebSocketDisconnect(detail="too slow") from None

    # --- frames from the client ------------------------------------------------------------

    async def _receive(self) -> Any:
        text = await self.socket.receive_text()
        if len(text.encode()) > self.settings.realtime_max_frame_bytes:
            self.end(
                CLOSE_TOO_BIG,
                f"frames are limited to {self.settings.realtime_max_frame_bytes} bytes",
            )
            raise WebSocketDisconnect(detail="frame too big")
        try:
            return decode_client_frame(text)
        except msgspec.ValidationError as exc:
            return exc
        except msgspec.DecodeError:
            return msgspec.ValidationError("not JSON")

    def _within_rate(self) -> bool:
        now = time.monotonic()
        rate = self.settings.realtime_frames_per_second
        self._tokens = min(rate * 2.0, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _receive_loop(self) -> None:
        try:
            while True:
                frame = await self._receive()
                if not self._within_rate():
                    self.end(CLOSE_POLICY, "too many frames; slow down")
                    return
                await self._handle(frame)
        except WebSocketDisconnect:
            self._closed.set()

    async def _handle(self, frame: Any) -> None:
        match frame:
            case msgspec.ValidationError():
                await self.send(error_frame("bad_frame", str(frame)))
            case PingFrame():
                await self.send({"type": "pong"})
            case AuthFrame(token=token):
                if not await self._authenticate(token):
                    self.end(CLOSE_UNAUTHORIZED, "the new token is not valid")
            case _ if not self.authorized.is_set():  # expired: only auth and ping are served
                await self.send(
                    error_frame(
                        "token_expired",
                        "send a new auth frame first",
                        getattr(frame, "id", None),
                    )
                )
            case SubscribeFrame():
                await self._subscribe(frame)
            case UnsubscribeFrame(id=sub_id) if sub_id in self.rooms:
                await self._leave_room(self.rooms[sub_id])
                await self.send({"type": "unsubscribed", "id": sub_id})
            case UnsubscribeFrame(id=sub_id):
                subscription = self.subscriptions.get(sub_id)
                if subscription is None:
                    await self.send(
                        error_frame("unknown_subscription", "no such subscription", sub_id)
                    )
                else:
                    await self._drop(subscription)
                    await self.send({"type": "unsubscribed", "id": sub_id})
            case BroadcastFrame() | PresenceFrame():
                await self._room_frame(frame)

    # --- auth ------------------------------------------------------------------------------

    async def _authenticate(self, token: str) -> bool:
        try:
            principal: Principal = await self.hub.authenticate(token)
        except Exception:
            return False
        if self.principal is not None and principal.user_id != self.principal.user_id:
            return False
        previous = self.principal
        self.principal = principal
        if previous is not None and previous.org_id != principal.org_id:
            # Rooms are shared within an org: the new credential's org is another one.
            for room in [r for r in self.rooms.values() if r.channel.startswith("room:")]:
                await self._leave_room(room)
                await self.send({"type": "unsubscribed", "id": room.id, "reason": "org_changed"})
        if previous is not None and previous.session_id is not None:
            self.hub.by_session.get(previous.session_id, set()).discard(self)
        if principal.session_id is not None:
            self.hub.by_session.setdefault(principal.session_id, set()).add(self)
        for subscription in self.subscriptions.values():  # the role or org may have changed
            subscription.predicate = self._predicate(
                subscription.collection, subscription.filter_text
            )
        self.authorized.set()
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        if principal.expires_at is not None:
            self._expiry_task = asyncio.create_task(self._expire(principal.expires_at))
        return True

    async def _expire(self, expires_at: int) -> None:
        await asyncio.sleep(max(0.0, expires_at - self.hub.clock.now().timestamp()))
        self.authorized.clear()  # events wait (queued, bounded) until a new auth frame
        try:
            await self.send(
                error_frame("token_expired", "send a new auth frame to keep receiving events")
            )
        except WebSocketDisconnect:
            return  # too slow: already ending
        try:
            await asyncio.wait_for(
                self.authorized.wait(), self.settings.realtime_reauth_grace_seconds
            )
        except TimeoutError:
            self.end(CLOSE_UNAUTHORIZED, "the token expired")

    # --- subscriptions ---------------------------------------------------------------------

    def _auth_context(self) -> AuthContext:
        assert self.principal is not None
        return AuthContext(
            id=self.principal.user_id, role=self.principal.role, org=self.principal.org_id
        )

    def _predicate(self, collection: Collection, filter_text: str | None) -> Predicate:
        assert self.principal is not None
        now = self.hub.clock.now()
        compiled = self.hub.rules[collection.name]
        if self.principal.bypasses_rules:
            rule: Predicate = lambda record: True  # noqa: E731
        elif "view" in compiled.admin_only:
            rule = lambda record: False  # noqa: E731
        else:
            rule = to_predicate(compiled.nodes["view"], collection, self._auth_context(), now)
        wanted: Predicate = lambda record: True  # noqa: E731
        if filter_text:
            node = parse(filter_text, max_length=self.settings.filter_max_length)
            if node is not None:
                check(node, collection)
                check_client_filter(node)
                wanted = to_predicate(node, collection, self._auth_context(), now)
        return lambda record: rule(record) and wanted(record)

    async def _subscribe(self, frame: SubscribeFrame) -> None:
        if frame.id in self.subscriptions or frame.id in self.rooms:
            await self.send(error_frame("duplicate_id", "that subscription id is in use", frame.id))
            return
        if len(self.subscriptions) + len(self.rooms) >= self.settings.realtime_max_subscriptions:
            await self.send(
                error_frame(
                    "too_many_subscriptions",
                    f"at most {self.settings.realtime_max_subscriptions} per connection",
                    frame.id,
                )
            )
            return
        kind, _, name = frame.channel.partition(":")
        if kind in ("room", "user", "job"):
            await self._join_room(frame, kind, name)
            return
        collection = self.hub.registry.get(name) if kind == "collection" else None
        if collection is None or not collection.realtime:
            await self.send(
                error_frame(
                    "unknown_channel",
                    "channels are collection:<name>, room:<name> and user:<your id>",
                    frame.id,
                )
            )
            return
        assert self.principal is not None
        if not check_collection(self.principal.collections, collection.name):
            await self.send(
                error_frame("forbidden", "this API key may not use that collection", frame.id)
            )
            return
        try:
            predicate = self._predicate(collection, frame.filter)
        except ExpressionError as exc:
            await self.send(error_frame("bad_filter", str(exc), frame.id))
            return
        subscriber = await self.hub.channels.subscribe(frame.channel)
        assert isinstance(subscriber, BoundedSubscriber)
        subscriber.on_overflow = self._too_slow
        subscription = Subscription(
            id=frame.id,
            channel=frame.channel,
            collection=collection,
            filter_text=frame.filter,
            predicate=predicate,
            subscriber=subscriber,
            since=frame.since or 0,
        )
        self.subscriptions[frame.id] = subscription
        await self.send({"type": "subscribed", "id": frame.id})
        if frame.since is not None and not await self._replay(subscription):
            return
        subscription.task = asyncio.create_task(self._pump(subscription))

    async def _replay(self, subscription: Subscription) -> bool:
        """Send what was missed since ``since``, from the outbox; live events wait queued."""
        trimmed = await self.hub.reader.scalar(
            select(_STATE.c.last_id).where(_STATE.c.name == TRIMMED_STATE)
        )
        if trimmed is not None and subscription.since < trimmed:
            await self.send(
                error_frame(
                    "history_gone",
                    "events that old are no longer kept; fetch the records again, then "
                    "subscribe without since",
                    subscription.id,
                )
            )
            await self._drop(subscription)
            return False
        limit = self.settings.realtime_replay_max_events
        missed = select(_OUTBOX.c.id).where(
            _OUTBOX.c.collection == subscription.collection.name,
            _OUTBOX.c.id > subscription.since,
        )
        count = await self.hub.reader.scalar(
            select(func.count()).select_from(missed.limit(limit + 1).subquery())
        )
        if (count or 0) > limit:
            await self.send(
                error_frame(
                    "replay_too_long",
                    f"more than {limit} events were missed (REALTIME_REPLAY_MAX_EVENTS); fetch"
                    " the records again, then subscribe without since",
                    subscription.id,
                )
            )
            await self._drop(subscription)
            return False
        # Every replayed id stays known until live events have passed it.
        subscription.delivered = RecentIds(DEDUPE_WINDOW + (count or 0))
        after = subscription.since
        while True:
            rows = await self.hub.reader.rows(
                select(_OUTBOX)
                .where(_OUTBOX.c.collection == subscription.collection.name, _OUTBOX.c.id > after)
                .order_by(_OUTBOX.c.id)
                .limit(REPLAY_PAGE)
            )
            for row in rows:
                event = ChangeEvent(
                    channel=subscription.channel,
                    id=row["id"],
                    op=row["op"],
                    record_id=row["record_id"],
                    record=row["record"],
                    old=row["old"],
                )
                subscription.delivered.add(event.id)
                await self._deliver(subscription, event)
            if len(rows) < REPLAY_PAGE:
                return True
            after = rows[-1]["id"]

    def _too_slow(self) -> None:
        limit = self.settings.realtime_send_queue
        self.end(CLOSE_TOO_SLOW, f"too slow: more than {limit} events waiting")

    async def _pump(self, subscription: Subscription) -> None:
        try:
            async for raw in subscription.subscriber.iter_events():
                event = decode_change(raw)
                if event.id <= subscription.since or event.id in subscription.delivered:
                    continue
                if not self.authorized.is_set():
                    await self.authorized.wait()
                subscription.delivered.add(event.id)
                await self._deliver(subscription, event)
        except (WebSocketDisconnect, RuntimeError):
            self._closed.set()

    async def _deliver(self, subscription: Subscription, event: ChangeEvent) -> None:
        shown = event.old if event.op == "delete" else event.record
        if not subscription.predicate(typed_record(subscription.collection, shown)):
            return
        await self.send(
            {
                "type": "event",
                "sub": subscription.id,
                "channel": subscription.channel,
                "event_id": event.id,
                "op": event.op,
                "record": shown,
            }
        )

    # --- rooms and user channels -----------------------------------------------------------

    async def _join_room(self, frame: SubscribeFrame, kind: str, name: str) -> None:
        assert self.principal is not None
        if kind == "user":
            if name != str(self.principal.user_id):
                await self.send(
                    error_frame("forbidden", "user:<id> is for that user only", frame.id)
                )
                return
            internal = user_channel(name)
        elif kind == "job":
            if not await self._owns_job(name):
                await self.send(
                    error_frame("forbidden", "job:<id> is for its owner only", frame.id)
                )
                return
            internal = frame.channel
        elif self.principal.org_id is None or not name:
            await self.send(
                error_frame("forbidden", "rooms are shared within your active org", frame.id)
            )
            return
        else:
            internal = room_channel(self.principal.org_id, name)
        subscriber = await self.hub.channels.subscribe(internal)
        assert isinstance(subscriber, BoundedSubscriber)
        subscriber.on_overflow = self._too_slow
        room = RoomSubscription(frame.id, frame.channel, internal, subscriber, frame.echo)
        self.rooms[frame.id] = room
        await self.send({"type": "subscribed", "id": frame.id})
        if kind == "job":  # where it stands now; updates follow
            rows = await self.hub.reader.rows(select(_JOBS).where(_JOBS.c.id == UUID(name)))
            current = msgspec.json.decode(job_update(rows[0])[0])
            await self.send({k: v for k, v in current.items() if k != "kind"} | {"type": "job"})
        if kind == "room":
            joins = await self.hub.presence.state(internal)
            await self.send(
                {"type": "presence", "channel": frame.channel, "joins": joins, "leaves": {}}
            )
        room.task = asyncio.create_task(self._pump_room(room))

    async def _owns_job(self, job_id: str) -> bool:
        assert self.principal is not None
        try:
            wanted = UUID(job_id)
        except ValueError:
            return False
        owner = await self.hub.reader.scalar(select(_JOBS.c.owner).where(_JOBS.c.id == wanted))
        return owner is not None and (owner == self.principal.user_id or self.principal.is_admin)

    def _room_named(self, channel: str) -> RoomSubscription | None:
        return next((r for r in self.rooms.values() if r.channel == channel), None)

    async def _room_frame(self, frame: BroadcastFrame | PresenceFrame) -> None:
        assert self.principal is not None
        if not may_write(self.principal.scopes):
            await self.send(error_frame("forbidden", "this API key has no 'write' scope"))
            return
        room = self._room_named(frame.channel)
        if room is None or not frame.channel.startswith("room:"):
            await self.send(error_frame("not_subscribed", "subscribe to the room first"))
            return
        if isinstance(frame, PresenceFrame):
            await self.hub.presence.join(
                room.internal, self.key, self.principal.user_id, frame.state
            )
            room.joined = True
            return
        message = {
            "kind": "broadcast",
            "event": frame.event,
            "payload": frame.payload,
            "from": str(self.principal.user_id),
            "origin": self.key,
        }
        await self.hub.channels.wait_published(encode(message), [room.internal])

    async def _pump_room(self, room: RoomSubscription) -> None:
        try:
            async for raw in room.subscriber.iter_events():
                message = msgspec.json.decode(raw)
                if not self.authorized.is_set():
                    await self.authorized.wait()
                if message["kind"] == "job":
                    frame = {k: v for k, v in message.items() if k != "kind"} | {"type": "job"}
                elif message["kind"] == "presence":
                    frame = {
                        "type": "presence",
                        "channel": room.channel,
                        "joins": message["joins"],
                        "leaves": message["leaves"],
                    }
                elif message["origin"] == self.key and not room.echo:
                    continue
                else:
                    frame = {
                        "type": "broadcast",
                        "channel": room.channel,
                        "event": message["event"],
                        "payload": message["payload"],
                        "from": message["from"],
                    }
                await self.send(frame)
        except (WebSocketDisconnect, RuntimeError):
            self._closed.set()

    async def _leave_room(self, room: RoomSubscription) -> None:
        self.rooms.pop(room.id, None)
        if room.task is not None:
            room.task.cancel()
        if room.joined:
            with contextlib.suppress(Exception):
                await self.hub.presence.leave(room.internal, self.key)
        with contextlib.suppress(Exception):
            await self.hub.channels.unsubscribe(room.subscriber)

    async def _drop(self, subscription: Subscription) -> None:
        self.subscriptions.pop(subscription.id, None)
        if subscription.task is not None:
            subscription.task.cancel()
        with contextlib.suppress(Exception):
            await self.hub.channels.unsubscribe(subscription.subscriber)


def _jobs_table() -> Any:
    """The columns of ``jobs`` a job channel reads. Declared here, not imported: jobs and
    realtime are independent layers (docs/decisions/0009-layers.md), and this is all realtime
    needs of jobs to answer a ``job:`` subscription."""
    from sqlalchemy import Column, Float, MetaData, Table, Text, Uuid
    from sqlalchemy.dialects.postgresql import JSONB

    return Table(
        "jobs",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("owner", Uuid),
        Column("status", Text),
        Column("progress", Float),
        Column("result", JSONB),
        Column("error", Text),
    )


_OUTBOX, _STATE, _JOBS = outbox_table, relay_state_table, _jobs_table()


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
