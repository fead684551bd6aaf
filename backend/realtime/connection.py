"""One realtime connection: the WebSocket's life from the auth frame to the close, the frames
the client sends (bounded in size and rate) and what each asks for, sends that never wait on a
client for longer than the send timeout, and the credential, renewed or expiring.

Collection subscriptions are in ``changes``, rooms, user and job channels in
``room_subscriptions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from uuid import uuid4

import msgspec
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from backend.identity import Principal
from backend.realtime.changes import (
    Subscription,
    drop_subscription,
    subscribe_to_collection,
    view_predicate,
)
from backend.realtime.hub import RealtimeHub
from backend.realtime.protocol import (
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    AuthFrame,
    BroadcastFrame,
    PingFrame,
    PresenceFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    decode_client_frame,
    encode,
    error_frame,
)
from backend.realtime.room_subscriptions import (
    RoomSubscription,
    join_room,
    leave_room,
    send_to_room,
)


class RealtimeConnection:
    """One client's socket, from its auth frame to its close."""

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

    def lost(self) -> None:
        """The client is gone (or a send to it failed): end without a close frame of ours."""
        self._closed.set()

    def too_slow(self) -> None:
        """A subscription's queue overflowed: the client does not keep up."""
        limit = self.settings.realtime_send_queue
        self.end(CLOSE_TOO_SLOW, f"too slow: more than {limit} events waiting")

    async def _cleanup(self) -> None:
        if self._expiry_task is not None:
            self._expiry_task.cancel()
        self.hub.connections.discard(self)
        for subscription in list(self.subscriptions.values()):
            await drop_subscription(self, subscription)
        for room in list(self.rooms.values()):
            await leave_room(self, room)
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
                await leave_room(self, self.rooms[sub_id])
                await self.send({"type": "unsubscribed", "id": sub_id})
            case UnsubscribeFrame(id=sub_id):
                subscription = self.subscriptions.get(sub_id)
                if subscription is None:
                    await self.send(
                        error_frame("unknown_subscription", "no such subscription", sub_id)
                    )
                else:
                    await drop_subscription(self, subscription)
                    await self.send({"type": "unsubscribed", "id": sub_id})
            case BroadcastFrame() | PresenceFrame():
                await send_to_room(self, frame)

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
                await leave_room(self, room)
                await self.send({"type": "unsubscribed", "id": room.id, "reason": "org_changed"})
        if previous is not None and previous.session_id is not None:
            self.hub.by_session.get(previous.session_id, set()).discard(self)
        if principal.session_id is not None:
            self.hub.by_session.setdefault(principal.session_id, set()).add(self)
        for subscription in self.subscriptions.values():  # the role or org may have changed
            subscription.predicate = view_predicate(
                self, subscription.collection, subscription.filter_text
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
            await join_room(self, frame, kind, name)
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
        await subscribe_to_collection(self, frame, collection)
