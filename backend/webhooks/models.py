"""Webhook endpoints, one delivery per (endpoint, outbox event), and every attempt to send it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

OPS = ("insert", "update", "delete")
ALL_OPS = "*"
DELIVERY_STATUSES = ("pending", "succeeded", "failed")


class WebhookEndpoint(UUIDv7AuditBase):
    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(Text)
    collection: Mapped[str] = mapped_column(String(63), index=True)
    # Any of insert, update, delete; or ["*"] for all three.
    events: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    # The secret is derived from SECRET_KEY and this salt (backend/webhooks/signing.py).
    secret_salt: Mapped[str] = mapped_column(String(64))
    # After a rotation the old secret still signs, as a second signature, until this time.
    previous_secret_salt: Mapped[str | None] = mapped_column(String(64), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), default=None
    )
    created_by: Mapped[UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )


class WebhookDelivery(UUIDv7AuditBase):
    """One outbox event for one endpoint. The unique key makes the relay's redelivery of an
    event (at-least-once) create nothing new."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="webhook_deliveries_endpoint_event_key"),
        Index("webhook_deliveries_endpoint_created_idx", "endpoint_id", "created_at"),
        Index("webhook_deliveries_status_next_idx", "status", "next_attempt_at"),
    )

    endpoint_id: Mapped[UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(BigInteger)
    collection: Mapped[str] = mapped_column(String(63))
    op: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    # Attempts ever made (they number the attempts log), and in the current round: a replay
    # starts a new round, with its own backoff and retry window.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    round_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    round_started_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=text("now()")
    )
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=text("now()")
    )
    # A worker sending it holds it until then; a copy of the task finding it held does nothing.
    leased_until: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)


class WebhookAttempt(UUIDv7AuditBase):
    __tablename__ = "webhook_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="webhook_attempts_delivery_attempt_key"),
    )

    delivery_id: Mapped[UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    succeeded: Mapped[bool] = mapped_column(Boolean)
