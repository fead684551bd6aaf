"""Webhooks: endpoints and deliveries, fed by the relay."""

from __future__ import annotations

from litestar import Litestar

from backend.capability import Basics, Capability
from backend.events.relay import Consumer
from backend.webhooks.consumer import make_webhook_consumer
from backend.webhooks.routes import WebhookController


def webhooks_capability(basics: Basics) -> Capability:
    engine = basics.database.get_engine

    def consumer(app: Litestar) -> Consumer:
        return make_webhook_consumer(app, engine())

    return Capability("webhooks", routes=[WebhookController], consumers=[consumer])
