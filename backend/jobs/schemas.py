"""API shapes for /jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class NewJob(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    type: str
    status: str
    progress: float
    result: Any | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
