"""Session state cached in each API process, kept true across processes by Redis pub/sub.

Checking a session on every request costs a Redis round trip; this cache answers from memory
for a few seconds. A revocation is published on a Redis channel, and every process drops the
session at once when it hears it (and forgets everything if it loses the subscription, since
it may have missed some). Realtime listens here too, to close a revoked session's sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal
from uuid import UUID

from redis.asyncio import Redis

log = logging.getLogger(__name__)

REVOCATIONS_CHANNEL = "litebase:auth:revocations"

# What else ends a caller's access, published on the same channel as "<kind>:<id>[:<id>]":
#   key:<api key id>            the key was revoked
#   keys:<user id>              every key of the user was revoked (reset, disable, deletion…)
#   member:<user id>:<org id>   the user left or was removed from the org
AccessChange = tuple[str, tuple[UUID, ...]]
ACCESS_CHANGE_KINDS = frozenset({"key", "keys", "member"})

# An active session's user, that user's role and the org the session acts in, read from the
# database (never from a token's claims: a token whose ``sub`` or ``org`` is not its
# session's is refused).
SessionOwner = tuple[UUID, str, UUID | None]
SessionState = SessionOwner | Literal[False]


class SessionStates:
    def __init__(self, ttl_seconds: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[UUID, tuple[SessionState, float]] = OrderedDict()
        self._on_revoke: list[Callable[[UUID], None]] = []
        self._on_access_change: list[Callable[[AccessChange], None]] = []

    def get(self, session_id: UUID) -> SessionState | None:
        """The owner of an active session, False (ended), or None (not known here: ask Redis)."""
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        active, expires = entry
        if expires < time.monotonic():
            self._entries.pop(session_id, None)
            return None
        return active

    def put(self, session_id: UUID, state: SessionState) -> None:
        self._entries[session_id] = (state, time.monotonic() + self.ttl)
        self._entries.move_to_end(session_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def revoked(self, session_id: UUID) -> None:
        self.put(session_id, False)
        for callback in self._on_revoke:
            callback(session_id)

    def on_revoke(self, callback: Callable[[UUID], None]) -> None:
        self._on_revoke.append(callback)

    def on_access_change(self, callback: Callable[[AccessChange], None]) -> None:
        self._on_access_change.append(callback)

    def forget_user(self, user_id: UUID) -> None:
        """Drop what is known of the user's sessions (their org changed): asked again next."""
        for session_id in [
            session_id
            for session_id, (state, _) in self._entries.items()
            if state and state[0] == user_id
        ]:
            self._entries.pop(session_id, None)

    def heard(self, data: str) -> None:
        """One message of the channel: a session id, or an access change."""
        kind, _, rest = data.partition(":")
        if not rest:
            self.revoked(UUID(data))
            return
        if kind not in ACCESS_CHANGE_KINDS:
            return
        change = (kind, tuple(UUID(part) for part in rest.split(":")))
        if kind == "member":  # the user's sessions acting in that org act in none now
            self.forget_user(change[1][0])
        for callback in self._on_access_change:
            callback(change)

    def forget_all(self) -> None:
        self._entries.clear()

    async def follow(self, redis: Redis, stop: asyncio.Event) -> None:
        """Apply revocations published by any process, until ``stop`` is set."""
        while not stop.is_set():
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(REVOCATIONS_CHANNEL)
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        with contextlib.suppress(ValueError):
                            self.heard(message["data"].decode())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # lost Redis: anything cached may be stale now
                log.warning("lost the session revocation feed (%s); retrying", exc)
                self.forget_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


async def publish_revocation(redis: Redis, session_id: UUID) -> None:
    await redis.publish(REVOCATIONS_CHANNEL, str(session_id))


async def publish_access_change(redis: Redis, kind: str, *ids: UUID) -> None:
    """Tell every process that a key, a user's keys or a membership no longer holds (open
    realtime sockets that relied on it are closed)."""
    assert kind in ACCESS_CHANGE_KINDS
    await redis.publish(REVOCATIONS_CHANNEL, ":".join([kind, *map(str, ids)]))
