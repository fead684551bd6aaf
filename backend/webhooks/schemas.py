"""API shapes for /webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

Op = Literal["insert", "update", "delete", "*"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]
Events = Annotated[list[Op], msgspec.Meta(min_length=1, max_length=4)]
Description = Annotated[str, msgspec.Meta(max_length=200)]


class NewEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str
    collection: str
    events: Events = msgspec.field(default_factory=lambda: ["*"])
    description: Description = ""
    enabled: bool = True


class EndpointUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str | msgspec.UnsetType = msgspec.UNSET
    collection: str | msgspec.UnsetType = msgspec.UNSET
    events: Events | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class SecretRotation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # How long the old secret keeps signing beside the new one; at most (and by default)
    # WEBHOOK_SECRET_OVERLAP_SECONDS. 0 drops it at once.
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0)] | None = None


class EndpointView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    url: str
    collection: str
    events: list[str]
    description: str
    enabled: bool
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointView, frozen=True, kw_only=True):
    """Only the answers to creation and rotation carry the secret: store it then."""

    secret: str


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    succeeded: bool


class DeliveryView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    endpoint_id: UUID
    event_id: int
    collection: str
    op: str
    status: str
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]
    attempts: list[AttemptView]
