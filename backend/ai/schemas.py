"""API shapes of /ai/usage and /ai/budgets (the /v1 bodies are OpenAI's own)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from backend.ai.usage import UsageLine
from backend.paging import Page

# Bounded by their columns (bigint, integer): a larger number was a 500 from the driver.
TokenLimit = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
RateLimit = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]


class UsageReport(Page[UsageLine], frozen=True, kw_only=True):
    """A page of usage lines, with the range and grouping they answer."""

    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    group_by: str


class BudgetLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A subject's override; a null (or missing) limit keeps the default; 0 means no limit."""

    tokens_per_period: TokenLimit | None = None
    requests_per_minute: RateLimit | None = None


class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["key", "user", "org"]
    id: UUID
    tokens_per_period: int  # in effect (override or default); 0 = none
    requests_per_minute: int
    overridden: bool
    tokens_used: int  # spent or reserved this period
    period_start: datetime
    period_end: datetime
