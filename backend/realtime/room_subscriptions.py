"""A connection's room, user and job subscriptions: who may join each, what is sent on joining
(the room's presence, the job's progress), the presence and broadcast frames a member sends,
and the forwarding of what is published on each.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from litestar.exceptions import WebSocketDisconnect
from sqlalchemy import select

from backend.auth.scopes import may_write
from backend.realtime.fanout import BoundedSubscriber, job_update
from backend.realtime.protocol import (
    BroadcastFrame,
    PresenceFrame,
    SubscribeFrame,
    encode,
    error_frame,
)
from backend.realtime.rooms import room_channel, user_channel

if TYPE_CHECKING:
    from backend.realtime.connection import RealtimeConnection


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


_JOBS = _jobs_table()


async def join_room(
    connection: RealtimeConnection, frame: SubscribeFrame, kind: str, name: str
) -> None:
    """Subscribe to ``room:<name>``, ``user:<id>`` or ``job:<id>``, if this principal may."""
    principal = connection.principal
    assert principal is not None
    if kind == "user":
        if name != str(principal.user_id):
            await connection.send(
                error_frame("forbidden", "user:<id> is for that user only", frame.id)
            )
            return
        internal = user_channel(name)
    elif kind == "job":
        if not await owns_job(connection, name):
            await connection.send(
                error_frame("forbidden", "job:<id> is for its owner only", frame.id)
            )
            return
        internal = frame.channel
    elif principal.org_id is None or not name:
        await connection.send(
            error_frame("forbidden", "rooms are shared within your active org", frame.id)
        )
        return
    else:
        internal = room_channel(principal.org_id, name)
    hub = connection.hub
    subscriber = await hub.channels.subscribe(internal)
    assert isinstance(subscriber, BoundedSubscriber)
    subscriber.on_overflow = connection.too_slow
    room = RoomSubscription(frame.id, frame.channel, internal, subscriber, frame.echo)
    connection.rooms[frame.id] = room
    await connection.send({"type": "subscribed", "id": frame.id})
    if kind == "job":  # where it stands now; updates follow
        rows = await hub.reader.rows(select(_JOBS).where(_JOBS.c.id == UUID(name)))
        current = msgspec.json.decode(job_update(rows[0])[0])
        await connection.send({k: v for k, v in current.items() if k != "kind"} | {"type": "job"})
    if kind == "room":
        joins = await hub.presence.state(internal)
        await connection.send(
            {"type": "presence", "channel": frame.channel, "joins": joins, "leaves": {}}
        )
    room.task = asyncio.create_task(pump_room(connection, room))


async def owns_job(connection: RealtimeConnection, job_id: str) -> bool:
    principal = connection.principal
    assert principal is not None
    try:
        wanted = UUID(job_id)
    except ValueError:
        return False
    owner = await connection.hub.reader.scalar(select(_JOBS.c.owner).where(_JOBS.c.id == wanted))
    return owner is not None and (owner == principal.user_id or principal.is_admin)


async def send_to_room(
    connection: RealtimeConnection, frame: BroadcastFrame | PresenceFrame
) -> None:
    """A member's presence state or broadcast, for everyone in the room."""
    principal = connection.principal
    assert principal is not None
    if not may_write(principal.scopes):
        await connection.send(error_frame("forbidden", "this API key has no 'write' scope"))
        return
    room = next((r for r in connection.rooms.values() if r.channel == frame.channel), None)
    if room is None or not frame.channel.startswith("room:"):
        await connection.send(error_frame("not_subscribed", "subscribe to the room first"))
        return
    hub = connection.hub
    if isinstance(frame, PresenceFrame):
        await hub.presence.join(room.internal, connection.key, principal.user_id, frame.state)
        room.joined = True
        return
    message = {
        "kind": "broadcast",
        "event": frame.event,
        "payload": frame.payload,
        "from": str(principal.user_id),
        "origin": connection.key,
    }
    await hub.channels.wait_published(encode(message), [room.internal])


async def pump_room(connection: RealtimeConnection, room: RoomSubscription) -> None:
    """Send what is published on the room: job updates, presence changes and broadcasts."""
    try:
        async for raw in room.subscriber.iter_events():
            message = msgspec.json.decode(raw)
            if not connection.authorized.is_set():
                await connection.authorized.wait()
            if message["kind"] == "job":
                frame = {k: v for k, v in message.items() if k != "kind"} | {"type": "job"}
            elif message["kind"] == "presence":
                frame = {
                    "type": "presence",
                    "channel": room.channel,
                    "joins": message["joins"],
                    "leaves": message["leaves"],
                }
            elif message["origin"] == connection.key and not room.echo:
                continue
            else:
                frame = {
                    "type": "broadcast",
                    "channel": room.channel,
                    "event": message["event"],
                    "payload": message["payload"],
                    "from": message["from"],
                }
            await connection.send(frame)
    except (WebSocketDisconnect, RuntimeError):
        connection.lost()


async def leave_room(connection: RealtimeConnection, room: RoomSubscription) -> None:
    connection.rooms.pop(room.id, None)
    if room.task is not None:
        room.task.cancel()
    if room.joined:
        with contextlib.suppress(Exception):
            await connection.hub.presence.leave(room.internal, connection.key)
    with contextlib.suppress(Exception):
        await connection.hub.channels.unsubscribe(room.subscriber)
