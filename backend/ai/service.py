"""Budget overrides (admins set them per key, user or org) and what is in effect for whom."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import cast
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.ai.budgets import Budgets, Limits, SubjectKind, default_limits, period_bounds
from backend.ai.models import AIBudget, delete_budget_override
from backend.ai.schemas import BudgetLimits, BudgetView
from backend.config import Settings
from backend.db.transactions import after_commit
from backend.lib.clock import Clock
from backend.paging import Page, Paging, by_key, page_by_key

log = logging.getLogger(__name__)


class BudgetService:
    def __init__(
        self, db: AsyncSession, budgets: Budgets, settings: Settings, clock: Clock
    ) -> None:
        self.db = db
        self.budgets = budgets
        self.settings = settings
        self.clock = clock

    async def _view(self, kind: SubjectKind, subject: UUID, row: AIBudget | None) -> BudgetView:
        defaults = default_limits(self.settings, kind)
        now = self.clock.now()
        start, end = period_bounds(now, self.settings.ai_budget_period)
        tokens = row.tokens_per_period if row else None
        rpm = row.requests_per_minute if row else None
        return BudgetView(
            kind=kind,
            id=subject,
            tokens_per_period=(defaults.tokens_per_period or 0) if tokens is None else tokens,
            requests_per_minute=(defaults.requests_per_minute or 0) if rpm is None else rpm,
            overridden=row is not None,
            tokens_used=await self.budgets.used(kind, subject, now),
            period_start=start,
            period_end=end,
        )

    async def overrides(self, paging: Paging) -> Page[BudgetView]:
        key = (AIBudget.subject_kind, AIBudget.subject_id)
        rows = (await self.db.scalars(by_key(select(AIBudget), paging, *key))).all()
        page = page_by_key(rows, paging, lambda r: (r.subject_kind, r.subject_id))
        return Page(
            items=[
                await self._view(cast(SubjectKind, r.subject_kind), r.subject_id, r)
                for r in page.items
            ],
            next_cursor=page.next_cursor,
        )

    async def get(self, kind: SubjectKind, subject: UUID) -> BudgetView:
        row = await self.db.scalar(
            select(AIBudget).where(AIBudget.subject_kind == kind, AIBudget.subject_id == subject)
        )
        return await self._view(kind, subject, row)

    async def put(self, kind: SubjectKind, subject: UUID, limits: BudgetLimits) -> BudgetView:
        now = self.clock.now()
        statement = insert(AIBudget).values(
            subject_kind=kind,
            subject_id=subject,
            tokens_per_period=limits.tokens_per_period,
            requests_per_minute=limits.requests_per_minute,
            created_at=now,
            updated_at=now,
        )
        await self.db.execute(
            statement.on_conflict_do_update(
                index_elements=["subject_kind", "subject_id"],
                set_={
                    "tokens_per_period": statement.excluded.tokens_per_period,
                    "requests_per_minute": statement.excluded.requests_per_minute,
                    "updated_at": now,
                },
            )
        )
        mirrored = Limits(limits.tokens_per_period, limits.requests_per_minute)
        after_commit(self.db, partial(self.budgets.mirror, kind, subject, mirrored))
        return await self.get(kind, subject)

    async def clear(self, kind: SubjectKind, subject: UUID) -> None:
        await self.db.execute(delete_budget_override(kind, subject))
        after_commit(self.db, partial(self.budgets.mirror, kind, subject, None))


async def copy_overrides(engine: AsyncEngine, budgets: Budgets) -> int:
    """Make Redis hold exactly the overrides in Postgres; returns how many there are."""
    async with AsyncSession(engine) as db:
        rows = (await db.scalars(select(AIBudget))).all()
    await budgets.replace_all(
        {
            (cast(SubjectKind, r.subject_kind), r.subject_id): Limits(
                r.tokens_per_period, r.requests_per_minute
            )
            for r in rows
        }
    )
    return len(rows)


async def keep_overrides_copied(
    engine: AsyncEngine,
    budgets: Budgets,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Copy the overrides into Redis now and every AI_BUDGET_SYNC_SECONDS (a Redis that lost
    them, or a change made in SQL, is caught up)."""
    while not stop.is_set():
        try:
            await copy_overrides(engine, budgets)
        except Exception:
            log.exception("could not copy budget overrides into Redis; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.ai_budget_sync_seconds)
