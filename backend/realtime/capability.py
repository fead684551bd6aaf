"""Realtime: the WebSocket route, Redis channels between processes, this process's hub of
connections, and the relay consumer that publishes committed changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend

from backend.auth.deps import auth_core_for
from backend.auth.sessions import Sessions
from backend.capability import Basics, Capability
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.db.transactions import owned_session
from backend.identity import Principal
from backend.lib.background import running
from backend.realtime.fanout import BoundedSubscriber, make_realtime_consumer
from backend.realtime.hub import RealtimeHub
from backend.realtime.rooms import Presence
from backend.realtime.routes import realtime


def realtime_capability(
    basics: Basics, registry: CollectionRegistry, rules: dict[str, CompiledRules]
) -> Capability:
    settings, redis = basics.settings, basics.redis
    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis),
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=settings.realtime_send_queue,
        subscriber_backlog_strategy="backoff",
        subscriber_class=BoundedSubscriber,
    )

    @asynccontextmanager
    async def start_hub(app: Litestar) -> AsyncIterator[None]:
        async def authenticate(token: str) -> Principal:
            async with owned_session(basics.database) as db:
                sessions = Sessions.over(auth_core_for(db, app.state, settings))
                return await sessions.authenticate(token)

        hub = RealtimeHub(
            settings=settings,
            channels=channels,
            registry=registry,
            rules=rules,
            reader=app.state.reader,
            clock=basics.clock,
            authenticate=authenticate,
            presence=Presence(redis, channels, settings.realtime_presence_ttl_seconds),
        )
        app.state.session_states.on_revoke(hub.session_revoked)
        app.state.session_states.on_access_change(hub.access_changed)
        app.state.realtime = hub
        async with running(hub.keep_presence, "presence"):
            yield

    enabled = settings.realtime_enabled
    return Capability(
        "realtime",
        routes=[realtime] if enabled else [],
        plugins=[channels],
        lifespans=[start_hub],
        consumers=[make_realtime_consumer] if enabled else [],
    )
