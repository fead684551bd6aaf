"""The outbox relay: hands committed changes to every capability's consumer, then to those
named in RELAY_CONSUMERS. Listed last, so it starts once the others' state is in place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar

from backend.capability import Basics, Capability, ConsumerFactory
from backend.events.consumers import build_consumers
from backend.events.relay import OutboxRelay
from backend.lib.background import running
from backend.lib.urls import libpq_database_url


def relay_capability(basics: Basics, consumers: Sequence[ConsumerFactory]) -> Capability:
    settings = basics.settings

    @asynccontextmanager
    async def run_relay(app: Litestar) -> AsyncIterator[None]:
        if not settings.relay_enabled:
            yield
            return
        assert settings.database_url is not None
        relay = OutboxRelay(
            libpq_database_url(settings.database_url),
            [
                *(make(app) for make in consumers),
                *build_consumers(app, settings.relay_consumers),
            ],
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_seconds,
            standby_interval=settings.relay_standby_seconds,
        )
        app.state.relay = relay
        # A grace period: the relay finishes handing on its current batch.
        async with running(relay.run, "outbox-relay", grace=10):
            yield

    return Capability("relay", lifespans=[run_relay])
