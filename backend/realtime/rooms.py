"""Rooms (broadcast and presence among members of one org) and per-user push channels.

Presence lives in Redis: a hash of entries (one per socket that joined) and a sorted set of
their expiry times, refreshed by a heartbeat. An entry whose socket closed is removed at once;
one whose API process died expires, and the first process to notice publishes the leave.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import msgspec
from litestar.channels import ChannelsPlugin
from redis.asyncio import Redis

from backend.realtime.protocol import encode


def room_channel(org_id: UUID, name: str) -> str:
    # Scoped by org: two orgs' "room:lobby" never meet.
    return f"room:{org_id}:{name}"


def user_channel(user_id: UUID | str) -> str:
    return f"user:{user_id}"


async def push_to_user(
    channels: ChannelsPlugin, user_id: UUID | str, event: str, payload: Any
) -> None:
    """Send ``payload`` to every socket of this user that subscribed to ``user:<id>``."""
    message = {"kind": "broadcast", "event": event, "payload": payload, "from": None, "origin": ""}
    await channels.wait_published(encode(message), [user_channel(user_id)])


class Presence:
    def __init__(self, redis: Redis, channels: ChannelsPlugin, ttl_seconds: float) -> None:
        self.redis = redis
        self.channels = channels
        self.ttl = ttl_seconds

    @staticmethod
    def _keys(channel: str) -> tuple[str, str]:
        return f"litebase:presence:{channel}", f"litebase:presence:{channel}:alive"

    async def _publish(self, channel: str, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        message = {"kind": "presence", "joins": joins, "leaves": leaves}
        await self.channels.wait_published(encode(message), [channel])

    async def join(self, channel: str, key: str, user_id: UUID, state: dict[str, Any]) -> None:
        entries, alive = self._keys(channel)
        entry = {"user": str(user_id), "state": state}
        pipe = self.redis.pipeline()
        pipe.hset(entries, key, msgspec.json.encode(entry))
        pipe.zadd(alive, {key: time.time() + self.ttl})
        await pipe.execute()
        await self._publish(channel, {key: entry}, {})

    async def leave(self, channel: str, key: str) -> None:
        entries, alive = self._keys(channel)
        if await self.redis.zrem(alive, key):  # only the one who removes it says so
            raw = await self.redis.hget(entries, key)
            await self.redis.hdel(entries, key)
            entry = msgspec.json.decode(raw) if raw else {}
            await self._publish(channel, {}, {key: entry})

    async def refresh(self, channel: str, keys: list[str]) -> None:
        if keys:
            _, alive = self._keys(channel)
            await self.redis.zadd(alive, dict.fromkeys(keys, time.time() + self.ttl), xx=True)

    async def state(self, channel: str) -> dict[str, Any]:
        await self.prune(channel)
        entries, _ = self._keys(channel)
        raw = await self.redis.hgetall(entries)
        return {_text(key): msgspec.json.decode(value) for key, value in raw.items()}

    async def prune(self, channel: str) -> None:
        """Drop entries whose process stopped refreshing them (it died), and say so."""
        _, alive = self._keys(channel)
        for key in await self.redis.zrangebyscore(alive, "-inf", time.time()):
            await self.leave(channel, _text(key))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
