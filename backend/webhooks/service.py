"""Webhook endpoints and deliveries, the API side: register, rotate, list, replay, and turn
outbox events into deliveries (the relay consumer calls ``record_deliveries``).

Workers send deliveries (backend/webhooks/delivery.py); admins alone manage any of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any
from uuid import UUID

import msgspec
from celery import Celery
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.db.locks import lock_subject
from backend.db.transactions import after_commit
from backend.errors import Conflict, Invalid, NotFound
from backend.events.relay import OutboxEvent
from backend.lib.clock import Clock
from backend.paging import Page, Paging, by_key, by_offset, page_by_key, page_by_offset
from backend.webhooks import DELIVER_TASK
from backend.webhooks.models import ALL_OPS, OPS, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from backend.webhooks.schemas import (
    AttemptView,
    DeliveryView,
    EndpointUpdate,
    EndpointView,
    EndpointWithSecret,
    NewEndpoint,
    SecretRotation,
)
from backend.webhooks.signing import derive_secret, new_salt
from backend.webhooks.targets import (
    RefusedTarget,
    TargetPolicy,
    check_addresses,
    parse_target,
    resolve_async,
)

log = logging.getLogger(__name__)

# Rows per INSERT of deliveries: well under Postgres' 32,767 bind parameters per statement.
_ROWS_PER_INSERT = 1000


def target_policy(settings: Settings) -> TargetPolicy:
    return TargetPolicy.of(
        settings.webhook_allow_private_targets, settings.webhook_allowed_networks
    )


def normalized_events(events: Iterable[str]) -> list[str]:
    """["*"] if all are wanted, else the ops in a fixed order, each once."""
    wanted = set(events)
    if ALL_OPS in wanted or wanted >= set(OPS):
        return [ALL_OPS]
    return [op for op in OPS if op in wanted]


def event_payload(event: OutboxEvent) -> dict[str, Any]:
    """The body a receiver gets: the change as the outbox recorded it."""
    return {
        "event_id": event.id,
        "collection": event.collection,
        "op": event.op,
        "record_id": event.record_id,
        "record": event.record,
        "old": event.old,
        "timestamp": event.created_at.isoformat(),
    }


def wants(endpoint_events: Sequence[str], op: str) -> bool:
    return ALL_OPS in endpoint_events or op in endpoint_events


def endpoint_view(endpoint: WebhookEndpoint) -> EndpointView:
    return msgspec.convert(endpoint, EndpointView, from_attributes=True)


def _field_problem(field: str, message: str) -> Invalid:
    return Invalid(
        f"{field} {message}",
        errors=[{"field": field, "message": message, "source": "body"}],
    )


async def enqueue_deliveries(celery: Celery, delivery_ids: Sequence[UUID]) -> bool:
    """Hand deliveries to the workers (one broker connection for the lot). False if the broker
    refused: they stay pending, and beat's webhooks.requeue hands them on later."""
    if not delivery_ids:
        return True

    def send() -> None:
        with celery.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                celery.send_task(DELIVER_TASK, args=[str(delivery_id)], producer=producer)

    try:
        await asyncio.to_thread(send)
    except Exception:
        log.exception("could not queue %d webhook deliveries; beat will", len(delivery_ids))
        return False
    return True


class WebhookService:
    def __init__(
        self,
        db: AsyncSession,
        settings: Settings,
        clock: Clock,
        registry: CollectionRegistry,
        celery: Celery,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.registry = registry
        self.celery = celery

    # --- endpoints

    async def _check_url(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves to, an address webhooks may not reach
        (the worker checks again before every attempt: DNS may change)."""
        try:
            target = parse_target(url)
            addresses = await resolve_async(
                target.host, target.port, self.settings.webhook_timeout_seconds
            )
            check_addresses(target.host, addresses, target_policy(self.settings))
        except (RefusedTarget, LookupError) as exc:
            raise _field_problem("url", str(exc)) from None

    def _check_collection(self, name: str) -> None:
        if self.registry.get(name) is None:
            known = ", ".join(sorted(c.name for c in self.registry))
            raise _field_problem("collection", f"is not a collection (known: {known})")

    def _with_secret(self, endpoint: WebhookEndpoint) -> EndpointWithSecret:
        view = endpoint_view(endpoint)
        secret = derive_secret(self.settings.secret_key, endpoint.secret_salt)
        return EndpointWithSecret(**msgspec.structs.asdict(view), secret=secret)

    async def _endpoint(self, endpoint_id: UUID, *, lock: bool = False) -> WebhookEndpoint:
        statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        endpoint = await self.db.scalar(statement.with_for_update() if lock else statement)
        if endpoint is None:
            raise NotFound("No such webhook", code="not_found")
        return endpoint

    async def create(self, creator: UUID, data: NewEndpoint) -> EndpointWithSecret:
        self._check_collection(data.collection)
        await self._check_url(data.url)
        await lock_subject(self.db, "webhooks", "all")  # the cap holds under concurrent creates
        count = await self.db.scalar(select(func.count()).select_from(WebhookEndpoint))
        if int(count or 0) >= self.settings.webhook_max_endpoints:
            raise Conflict(
                f"There are {count} webhooks already (WEBHOOK_MAX_ENDPOINTS); delete one first",
                code="too_many_webhooks",
            )
        endpoint = WebhookEndpoint(
            url=data.url,
            collection=data.collection,
            events=normalized_events(data.events),
            description=data.description,
            enabled=data.enabled,
            secret_salt=new_salt(),
            created_by=creator,
        )
        self.db.add(endpoint)
        await self.db.flush()
        await self.db.refresh(endpoint)
        view = self._with_secret(endpoint)
        await self.db.flush()
        return view

    async def list_all(self, paging: Paging) -> Page[EndpointView]:
        rows = await self.db.scalars(
            by_offset(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at.desc()), paging)
        )
        return page_by_offset(rows.all(), paging).map(endpoint_view)

    async def get(self, endpoint_id: UUID) -> EndpointView:
        return endpoint_view(await self._endpoint(endpoint_id))

    async def update(self, endpoint_id: UUID, data: EndpointUpdate) -> EndpointView:
        endpoint = await self._endpoint(endpoint_id, lock=True)
        if not isinstance(data.collection, msgspec.UnsetType):
            self._check_collection(data.collection)
            endpoint.collection = data.collection
        if not isinstance(data.url, msgspec.UnsetType):
            await self._check_url(data.url)
            endpoint.url = data.url
        if not isinstance(data.events, msgspec.UnsetType):
            endpoint.events = normalized_events(data.events)
        if not isinstance(data.description, msgspec.UnsetType):
            endpoint.description = data.description
        if not isinstance(data.enabled, msgspec.UnsetType):
            endpoint.enabled = data.enabled
        await self.db.flush()
        await self.db.refresh(endpoint)
        view = endpoint_view(endpoint)
        await self.db.flush()
        return view

    async def delete(self, endpoint_id: UUID) -> None:
        await self.db.delete(await self._endpoint(endpoint_id))
        await self.db.flush()

    async def rotate_secret(self, endpoint_id: UUID, data: SecretRotation) -> EndpointWithSecret:
        """A new secret signs from now on; the old one signs too (a second ``v1``) for the
        overlap, so receivers can switch without dropping a delivery."""
        longest = self.settings.webhook_secret_overlap_seconds
        overlap = longest if data.overlap_seconds is None else data.overlap_seconds
        if overlap > longest:
            raise _field_problem(
                "overlap_seconds", f"is at most {longest} (WEBHOOK_SECRET_OVERLAP_SECONDS)"
            )
        endpoint = await self._endpoint(endpoint_id, lock=True)
        if overlap > 0:
            endpoint.previous_secret_salt = endpoint.secret_salt
            endpoint.previous_secret_expires_at = self.clock.now() + timedelta(seconds=overlap)
        else:
            endpoint.previous_secret_salt = None
            endpoint.previous_secret_expires_at = None
        endpoint.secret_salt = new_salt()
        await self.db.flush()
        await self.db.refresh(endpoint)
        view = self._with_secret(endpoint)
        await self.db.flush()
        return view

    # --- deliveries

    async def _views(self, deliveries: Sequence[WebhookDelivery]) -> list[DeliveryView]:
        attempts: dict[UUID, list[AttemptView]] = {d.id: [] for d in deliveries}
        if deliveries:
            rows = await self.db.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
            )
            for a in rows:
                attempts[a.delivery_id].append(
                    AttemptView(
                        attempt=a.attempt,
                        at=a.created_at,
                        status_code=a.status_code,
                        latency_ms=a.latency_ms,
                        error=a.error,
                        succeeded=a.succeeded,
                    )
                )
        return [
            DeliveryView(
                id=d.id,
                endpoint_id=d.endpoint_id,
                event_id=d.event_id,
                collection=d.collection,
                op=d.op,
                status=d.status,
                next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                created_at=d.created_at,
                finished_at=d.finished_at,
                payload=d.payload,
                attempts=attempts[d.id],
            )
            for d in deliveries
        ]

    async def deliveries(
        self, endpoint_id: UUID, status: str | None, paging: Paging
    ) -> Page[DeliveryView]:
        await self._endpoint(endpoint_id)
        statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if status:
            statement = statement.where(WebhookDelivery.status == status)
        key = (WebhookDelivery.created_at, WebhookDelivery.id)
        rows = await self.db.scalars(by_key(statement, paging, *key, descending=True))
        page = page_by_key(rows.all(), paging, lambda d: (d.created_at, d.id))
        return Page(items=await self._views(page.items), next_cursor=page.next_cursor)

    async def _delivery(self, delivery_id: UUID, *, lock: bool = False) -> WebhookDelivery:
        statement = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        delivery = await self.db.scalar(statement.with_for_update() if lock else statement)
        if delivery is None:
            raise NotFound("No such delivery", code="not_found")
        return delivery

    async def delivery(self, delivery_id: UUID) -> DeliveryView:
        return (await self._views([await self._delivery(delivery_id)]))[0]

    async def replay(self, delivery_id: UUID) -> DeliveryView:
        """Send a finished delivery again: a new round of attempts, logged after the old ones."""
        delivery = await self._delivery(delivery_id, lock=True)
        if delivery.status == "pending":
            raise Conflict("The delivery is being sent already", code="pending")
        endpoint = await self.db.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            raise Conflict("The webhook is disabled; enable it first", code="disabled")
        await self.db.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(
                status="pending",
                round_attempts=0,
                round_started_at=func.now(),
                next_attempt_at=func.now(),
                finished_at=None,
                leased_until=None,
            )
        )
        await self.db.refresh(delivery)
        after_commit(self.db, partial(enqueue_deliveries, self.celery, [delivery_id]))
        return (await self._views([delivery]))[0]


async def record_deliveries(db: AsyncSession, events: Sequence[OutboxEvent]) -> list[UUID]:
    """One delivery per (enabled endpoint, event it wants), created once: an event the relay
    hands on again creates nothing. Returns the new deliveries, to be sent."""
    collections = {event.collection for event in events}
    endpoints = (
        await db.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.collection, WebhookEndpoint.events).where(
                WebhookEndpoint.enabled, WebhookEndpoint.collection.in_(collections)
            )
        )
    ).all()
    if not endpoints:
        return []
    rows = [
        {
            "endpoint_id": endpoint_id,
            "event_id": event.id,
            "collection": event.collection,
            "op": event.op,
            "payload": event_payload(event),
        }
        for event in events
        for endpoint_id, collection, wanted in endpoints
        if collection == event.collection and wants(wanted, event.op)
    ]
    ids: list[UUID] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        created = await db.scalars(
            insert(WebhookDelivery)
            .values(rows[start : start + _ROWS_PER_INSERT])
            .on_conflict_do_nothing(constraint="webhook_deliveries_endpoint_event_key")
            .returning(WebhookDelivery.id)
        )
        ids += created
    return ids
