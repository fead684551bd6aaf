"""What every realtime connection of one API process shares: settings, channels, rules and
presence; the open sockets, by session, so a sign-out, a revoked key or a left org closes
them; the origin allow-list; and the presence heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from litestar.channels import ChannelsPlugin

from backend.auth.revocations import AccessChange
from backend.collections.reads import Reader
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.lib.clock import Clock
from backend.realtime.protocol import CLOSE_UNAUTHORIZED
from backend.realtime.rooms import Presence

if TYPE_CHECKING:
    from backend.realtime.connection import RealtimeConnection

log = logging.getLogger(__name__)


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
