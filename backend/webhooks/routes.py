"""HTTP routes for /webhooks (admins only)."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.deps import BEARER
from backend.auth.guards import admin_only
from backend.config import Settings
from backend.identity import Principal
from backend.paging import Page, Paging
from backend.webhooks.schemas import (
    DeliveryStatus,
    DeliveryView,
    EndpointUpdate,
    EndpointView,
    EndpointWithSecret,
    NewEndpoint,
    SecretRotation,
)
from backend.webhooks.service import WebhookService


async def provide_webhook_service(
    db_session: AsyncSession, state: State, settings: Settings
) -> WebhookService:
    return WebhookService(db_session, settings, state.clock, state.collections, state.celery)


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    security = BEARER
    guards = [admin_only]
    dependencies = {"webhook_service": Provide(provide_webhook_service)}

    @post("/", summary="Register an endpoint; the answer holds its secret, shown this once")
    async def create(
        self, data: NewEndpoint, current: Principal, webhook_service: WebhookService
    ) -> EndpointWithSecret:
        return await webhook_service.create(current.user_id, data)

    @get("/", summary="Every endpoint, newest first")
    async def list_all(self, webhook_service: WebhookService, paging: Paging) -> Page[EndpointView]:
        return await webhook_service.list_all(paging)

    @get("/{webhook_id:uuid}", summary="An endpoint")
    async def get_one(self, webhook_id: UUID, webhook_service: WebhookService) -> EndpointView:
        return await webhook_service.get(webhook_id)

    @patch("/{webhook_id:uuid}", summary="Change an endpoint's URL, events, or enable/disable it")
    async def change(
        self,
        webhook_id: UUID,
        data: EndpointUpdate,
        webhook_service: WebhookService,
    ) -> EndpointView:
        return await webhook_service.update(webhook_id, data)

    @delete("/{webhook_id:uuid}", summary="Delete an endpoint and its delivery log")
    async def remove(self, webhook_id: UUID, webhook_service: WebhookService) -> None:
        await webhook_service.delete(webhook_id)

    @post(
        "/{webhook_id:uuid}/rotate-secret",
        summary="A new secret; the old one still signs, as a second signature, for the overlap",
        status_code=200,
    )
    async def rotate_secret(
        self,
        webhook_id: UUID,
        webhook_service: WebhookService,
        data: SecretRotation | None = None,
    ) -> EndpointWithSecret:
        return await webhook_service.rotate_secret(webhook_id, data or SecretRotation())

    @get("/{webhook_id:uuid}/deliveries", summary="An endpoint's deliveries and their attempts")
    async def deliveries(
        self,
        webhook_id: UUID,
        webhook_service: WebhookService,
        paging: Paging,
        status: DeliveryStatus | None = None,
    ) -> Page[DeliveryView]:
        return await webhook_service.deliveries(webhook_id, status, paging)

    @get("/deliveries/{delivery_id:uuid}", summary="A delivery and its attempts")
    async def delivery(self, delivery_id: UUID, webhook_service: WebhookService) -> DeliveryView:
        return await webhook_service.delivery(delivery_id)

    @post(
        "/deliveries/{delivery_id:uuid}/replay",
        summary="Send a finished delivery again",
        status_code=202,
    )
    async def replay(self, delivery_id: UUID, webhook_service: WebhookService) -> DeliveryView:
        return await webhook_service.replay(delivery_id)
