"""Usage: one event per gateway call, buffered in Redis and written to Postgres in batches.

On the request path a call costs one RPUSH (in the script that settles its budget); the API's
background loop drains the list in batches of AI_USAGE_BATCH_SIZE, one INSERT per batch.
Events wait in Redis, not in process memory, so a crashed API process loses none; each
carries its id and the insert skips ids already written, so a batch re-read after a crash
between insert and trim is not counted twice. A Redis lock lets one drainer run at a time
across API processes.

Rows older than AI_USAGE_RETENTION_DAYS roll up (a beat task) into daily totals kept by the
same dimensions, so ``ai_usage`` stays bounded; reports read both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg
from redis.asyncio import Redis
from sqlalchemy import ColumnElement, Select, case, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from backend.ai.models import AIUsage, AIUsageDaily
from backend.config import Settings
from backend.identity import Principal
from backend.paging import Page, Paging, by_offset, page_by_offset

log = logging.getLogger(__name__)

USAGE_QUEUE = "litebase:ai:usage"
DRAIN_LOCK = "litebase:ai:usage:drain"
GroupBy = Literal["model", "key", "user", "org"]
GROUP_COLUMNS: dict[str, str] = {
    "model": "model",
    "key": "api_key_id",
    "user": "user_id",
    "org": "org_id",
}
Outcome = Literal["ok", "upstream_error", "rejected", "cancelled", "budget_exceeded"]


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    created_at: datetime
    user_id: UUID
    api_key_id: UUID | None
    org_id: UUID | None
    kind: str  # chat | embeddings
    model: str  # the alias asked for
    upstream_model: str | None  # what served it (after fallbacks); None when nothing did
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    outcome: str
    prompt_name: str | None = None
    prompt_version: str | None = None


_decode = msgspec.json.Decoder(UsageEvent)

# Drop the batch just written from the head of the list, unless another drainer (one that
# outlived the lock) already did: then the head is no longer the batch's first event.
TRIM_IF_HEAD_LUA = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
  return 1
end
return 0
"""


class UsageWriter:
    """Drains the Redis buffer into ``ai_usage`` (run by the API's lifespan)."""

    def __init__(self, redis: Redis, engine: AsyncEngine, settings: Settings) -> None:
        self._redis = redis
        self._engine = engine
        self._settings = settings
        self._trim = redis.register_script(TRIM_IF_HEAD_LUA)

    async def drain(self) -> int:
        """Write every buffered event; returns how many were read. One drainer at a time."""
        lock = self._redis.lock(DRAIN_LOCK, timeout=60)
        if not await lock.acquire(blocking=False):
            return 0
        size = self._settings.ai_usage_batch_size
        total = 0
        try:
            while True:
                raw = await self._redis.lrange(USAGE_QUEUE, 0, size - 1)
                if not raw:
                    break
                rows = []
                for item in raw:
                    try:
                        rows.append(msgspec.structs.asdict(_decode.decode(item)))
                    except msgspec.DecodeError:
                        log.error(
                            "dropping an unreadable usage event", extra={"usage_event": item[:200]}
                        )
                async with self._engine.begin() as conn:
                    if rows:
                        await conn.execute(insert(AIUsage).on_conflict_do_nothing(), rows)
                await self._trim(keys=[USAGE_QUEUE], args=[raw[0], len(raw)])
                total += len(raw)
                if len(raw) < size:
                    break
        finally:
            with contextlib.suppress(Exception):
                await lock.release()
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Drain every AI_USAGE_FLUSH_SECONDS until stopped, then once more."""
        while not stop.is_set():
            try:
                await self.drain()
            except Exception:  # Postgres or Redis away: events stay buffered for the next try
                log.exception("usage drain failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.ai_usage_flush_seconds)
        with contextlib.suppress(Exception):
            await self.drain()


class UsageLine(msgspec.Struct, frozen=True, kw_only=True):
    key: str | None
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


async def usage_report(
    db: AsyncSession,
    principal: Principal,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    paging: Paging,
) -> Page[UsageLine]:
    """Usage in [start, end) grouped by one dimension: the caller's own unless an admin; the
    most tokens first (the key breaks ties, so pages do not overlap).

    Recent calls are counted exactly; rolled-up days count whole when the range touches them.
    """
    column = GROUP_COLUMNS[group_by]
    recent_filters: list[ColumnElement[bool]] = [
        AIUsage.created_at >= start,
        AIUsage.created_at < end,
    ]
    daily_filters: list[ColumnElement[bool]] = [
        AIUsageDaily.day >= start.astimezone(UTC).date(),
        AIUsageDaily.day
        < (end.astimezone(UTC) - timedelta(microseconds=1)).date() + timedelta(days=1),
    ]
    if not principal.is_admin:
        recent_filters.append(AIUsage.user_id == principal.user_id)
        daily_filters.append(AIUsageDaily.user_id == principal.user_id)
    recent: Select[Any] = select(
        getattr(AIUsage, column).label("key"),
        literal(1).label("requests"),
        case((AIUsage.outcome != "ok", 1), else_=0).label("failed"),
        AIUsage.prompt_tokens.label("prompt_tokens"),
        AIUsage.completion_tokens.label("completion_tokens"),
    ).where(*recent_filters)
    daily: Select[Any] = select(
        getattr(AIUsageDaily, column).label("key"),
        AIUsageDaily.requests.label("requests"),
        case((AIUsageDaily.outcome != "ok", AIUsageDaily.requests), else_=0),
        AIUsageDaily.prompt_tokens,
        AIUsageDaily.completion_tokens,
    ).where(*daily_filters)
    both = union_all(recent, daily).subquery()
    query = (
        select(
            both.c.key,
            func.sum(both.c.requests),
            func.sum(both.c.failed),
            func.sum(both.c.prompt_tokens),
            func.sum(both.c.completion_tokens),
        )
        .group_by(both.c.key)
        .order_by(func.sum(both.c.prompt_tokens + both.c.completion_tokens).desc(), both.c.key)
    )
    page = page_by_offset((await db.execute(by_offset(query, paging))).all(), paging)
    lines = []
    for key, requests, failed, prompt, completion in page.items:
        lines.append(
            UsageLine(
                key=None if key is None else str(key),
                requests=int(requests),
                failed=int(failed),
                prompt_tokens=int(prompt),
                completion_tokens=int(completion),
                total_tokens=int(prompt) + int(completion),
            )
        )
    return Page(items=lines, next_cursor=page.next_cursor)


# Whole days past the cutoff leave ai_usage and add into ai_usage_daily, in one statement.
ROLLUP_SQL = """
    WITH gone AS (
        DELETE FROM ai_usage WHERE created_at < %(cutoff)s
        RETURNING created_at, prompt_tokens, completion_tokens, latency_ms, user_id,
                  api_key_id, org_id, kind, model, upstream_model, outcome, prompt_name,
                  prompt_version
    ),
    added AS (
        INSERT INTO ai_usage_daily
            (id, day, user_id, api_key_id, org_id, kind, model, upstream_model, outcome,
             prompt_name, prompt_version, requests, prompt_tokens, completion_tokens, latency_ms)
        SELECT gen_random_uuid(), (created_at AT TIME ZONE 'UTC')::date, user_id, api_key_id,
               org_id, kind, model, upstream_model, outcome, prompt_name, prompt_version,
               count(*), sum(prompt_tokens), sum(completion_tokens), sum(latency_ms)
        FROM gone
        GROUP BY 2, user_id, api_key_id, org_id, kind, model, upstream_model, outcome,
                 prompt_name, prompt_version
        ON CONFLICT (day, user_id, api_key_id, org_id, kind, model, upstream_model, outcome,
                     prompt_name, prompt_version) DO UPDATE SET
            requests = ai_usage_daily.requests + excluded.requests,
            prompt_tokens = ai_usage_daily.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = ai_usage_daily.completion_tokens + excluded.completion_tokens,
            latency_ms = ai_usage_daily.latency_ms + excluded.latency_ms
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM added)
"""


def roll_up_usage(conn: psycopg.Connection[Any], retention_days: int, now: datetime) -> int:
    """Move whole UTC days older than the retention into daily totals, in one statement;
    returns how many per-call rows were rolled up. Running it again moves nothing more."""
    cutoff = _day_start((now.astimezone(UTC) - timedelta(days=retention_days)).date())
    with conn.transaction():
        row = conn.execute(ROLLUP_SQL, {"cutoff": cutoff}).fetchone()
    assert row is not None
    return int(row[0])
