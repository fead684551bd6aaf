"""Token budgets and request rates per API key, user and org, enforced in Redis.

Before a call the gateway *reserves* an estimate (the prompt's estimated tokens plus
``max_tokens``, or AI_COMPLETION_RESERVE_TOKENS, per choice) against every subject's
ledger for the period, and counts one request in the subject's current minute. A Lua
script checks every limit and reserves in one atomic step, so concurrent calls are admitted
only while what is spent plus what is reserved fits: nothing can overspend by more than the
calls in flight under-estimated. After the call the reservation *settles* to the real usage
(or to nothing when the call failed).

Limits come from settings (0 = none) unless an admin set an override for the subject
(``PUT /ai/budgets/{kind}/{id}``); overrides live in Postgres and are mirrored into one Redis
hash, which the script reads, so checking costs no database round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from redis.asyncio import Redis

from backend.config import Settings
from backend.errors import TooMany
from backend.identity import Principal

SubjectKind = Literal["key", "user", "org"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("key", "user", "org")
LIMITS_KEY = "litebase:ai:limits"
LEDGER_PREFIX = "litebase:ai:tokens"
RATE_PREFIX = "litebase:ai:rpm"
# A token is at least ~4 bytes of English on OpenAI's tokenizers; a message costs a few more.
BYTES_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4

# KEYS[1] the limits hash; then per subject i: KEYS[2i] its ledger, KEYS[2i+1] its minute.
# ARGV: tokens to reserve, ledger TTL, then per subject: name, default tokens, default rpm.
# Returns {0} when admitted, else {i, "tokens"|"requests", used, limit}.
RESERVE_LUA = """
local amount = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local n = (#KEYS - 1) / 2
for i = 1, n do
  local name = ARGV[3 * i]
  local tokens = tonumber(redis.call('HGET', KEYS[1], name .. ':tokens') or ARGV[3 * i + 1])
  if tokens > 0 then
    local used = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if used + amount > tokens then return {i, 'tokens', used, tokens} end
  end
  local rpm = tonumber(redis.call('HGET', KEYS[1], name .. ':rpm') or ARGV[3 * i + 2])
  if rpm > 0 then
    local count = tonumber(redis.call('GET', KEYS[2 * i + 1]) or '0')
    if count + 1 > rpm then return {i, 'requests', count, rpm} end
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[2 * i], amount)
  redis.call('EXPIRE', KEYS[2 * i], ttl)
  redis.call('INCR', KEYS[2 * i + 1])
  redis.call('EXPIRE', KEYS[2 * i + 1], 120)
end
return {0}
"""


@dataclass(frozen=True)
class Limits:
    """A subject's limits; in an override, None keeps the default from settings."""

    tokens_per_period: int | None
    requests_per_minute: int | None


@dataclass(frozen=True)
class Reservation:
    """What a call holds: the ledgers it charged and how much."""

    ledgers: tuple[str, ...]
    tokens: int
    prompt_tokens: int


def subjects(principal: Principal) -> list[tuple[SubjectKind, UUID]]:
    found: list[tuple[SubjectKind, UUID]] = []
    if principal.api_key_id is not None:
        found.append(("key", principal.api_key_id))
    found.append(("user", principal.user_id))
    if principal.org_id is not None:
        found.append(("org", principal.org_id))
    return found


# What a user may spend by default in prod when AI_USER_TOKENS_PER_PERIOD /
# AI_USER_REQUESTS_PER_MINUTE are not set (0 still says none): a free sign-up must not be an
# open tab on the operator's model account. Dev and test default to none.
PROD_USER_LIMITS = Limits(tokens_per_period=1_000_000, requests_per_minute=60)


def default_limits(settings: Settings, kind: SubjectKind) -> Limits:
    tokens: int | None = getattr(settings, f"ai_{kind}_tokens_per_period")
    rate: int | None = getattr(settings, f"ai_{kind}_requests_per_minute")
    prod_user = kind == "user" and settings.env == "prod"
    return Limits(
        tokens if tokens is not None else (PROD_USER_LIMITS.tokens_per_period if prod_user else 0),
        rate if rate is not None else (PROD_USER_LIMITS.requests_per_minute if prod_user else 0),
    )


def period_bounds(now: datetime, period: str) -> tuple[datetime, datetime]:
    """The budget period holding ``now`` (UTC calendar day, ISO week or month)."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_text_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_bytes(item) for item in value.values())
    return 0


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """A rough count of the tokens a chat or embeddings body sends (reserved, then settled)."""
    if "messages" in body:
        messages = body["messages"] if isinstance(body["messages"], list) else []
        text = _text_bytes(messages) + _text_bytes(body.get("tools") or [])
        return math.ceil(text / BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)
    data = body.get("input")
    if isinstance(data, list) and data and all(isinstance(x, int) for x in data):
        return len(data)  # already tokens
    if isinstance(data, list) and data and all(isinstance(x, list) for x in data):
        return sum(len(x) for x in data)
    return max(1, math.ceil(_text_bytes(data) / BYTES_PER_TOKEN))


def completion_reserve(body: dict[str, Any], settings: Settings) -> int:
    """The completion tokens to hold for a chat body: its max tokens per choice, times n."""
    if "messages" not in body:
        return 0
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    per_choice = limit if isinstance(limit, int) and limit > 0 else None
    choices = body.get("n")
    n = choices if isinstance(choices, int) and choices > 0 else 1
    return (per_choice or settings.ai_completion_reserve_tokens) * n


def capped_completion(body: dict[str, Any], settings: Settings, base_url: str) -> dict[str, Any]:
    """The chat body as sent upstream: one that names no limit gets the per-choice amount its
    reservation held (AI_COMPLETION_RESERVE_TOKENS), so a call cannot spend past what it
    reserved. OpenAI's own API takes ``max_completion_tokens`` (its reasoning models refuse
    ``max_tokens``); other OpenAI-compatible servers take ``max_tokens``."""
    if "messages" not in body or "max_tokens" in body or "max_completion_tokens" in body:
        return body
    field = "max_tokens"
    if urlsplit(base_url).hostname == "api.openai.com":
        field = "max_completion_tokens"
    return {**body, field: settings.ai_completion_reserve_tokens}


class BudgetExceeded(TooMany):
    def __init__(self, kind: SubjectKind, what: str, used: int, limit: int, retry_after: int):
        detail = (
            f"The {kind}'s token budget for this period is spent ({used} of {limit} tokens used "
            "or reserved)"
            if what == "tokens"
            else f"The {kind} made {used} of {limit} model requests allowed this minute"
        )
        headers = {"Retry-After": str(retry_after)}
        if what == "tokens":
            headers["x-should-retry"] = "false"  # the openai client would retry otherwise
        super().__init__(detail, code="budget_exceeded", subject=kind, limit=what, headers=headers)


class Budgets:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._reserve = redis.register_script(RESERVE_LUA)

    def ledger_key(self, kind: SubjectKind, subject: UUID, now: datetime) -> str:
        start, _ = period_bounds(now, self._settings.ai_budget_period)
        return f"{LEDGER_PREFIX}:{kind}:{subject}:{start:%Y%m%d}"

    async def reserve(
        self, principal: Principal, body: dict[str, Any], now: datetime
    ) -> Reservation:
        """Hold the call's estimated tokens against every subject, or raise BudgetExceeded."""
        prompt = estimate_prompt_tokens(body)
        amount = prompt + completion_reserve(body, self._settings)
        found = subjects(principal)
        start, end = period_bounds(now, self._settings.ai_budget_period)
        minute = int(now.timestamp()) // 60
        keys: list[str] = [LIMITS_KEY]
        args: list[Any] = [amount, int((end - now).total_seconds()) + 86_400]
        for kind, subject in found:
            keys += [
                f"{LEDGER_PREFIX}:{kind}:{subject}:{start:%Y%m%d}",
                f"{RATE_PREFIX}:{kind}:{subject}:{minute}",
            ]
            limits = default_limits(self._settings, kind)
            args += [f"{kind}:{subject}", limits.tokens_per_period, limits.requests_per_minute]
        verdict = await self._reserve(keys=keys, args=args)
        if int(verdict[0]) != 0:
            index, what, used, limit = int(verdict[0]), verdict[1], int(verdict[2]), int(verdict[3])
            what = what.decode() if isinstance(what, bytes) else str(what)
            retry = (end - now) if what == "tokens" else timedelta(seconds=60 - now.second)
            raise BudgetExceeded(
                found[index - 1][0], what, used, limit, max(1, math.ceil(retry.total_seconds()))
            )
        return Reservation(tuple(keys[1::2]), amount, prompt)

    async def used(self, kind: SubjectKind, subject: UUID, now: datetime) -> int:
        """Tokens spent or held by a subject this period."""
        value = await self._redis.get(self.ledger_key(kind, subject, now))
        return int(value or 0)

    async def mirror(self, kind: SubjectKind, subject: UUID, limits: Limits | None) -> None:
        """Put one subject's override into the hash the script reads (None removes it)."""
        pipe = self._redis.pipeline(transaction=True)
        for field, value in _fields(kind, subject, limits or Limits(None, None)).items():
            if value is None:
                pipe.hdel(LIMITS_KEY, field)
            else:
                pipe.hset(LIMITS_KEY, field, value)
        await pipe.execute()

    async def replace_all(self, overrides: dict[tuple[SubjectKind, UUID], Limits]) -> None:
        """Make the hash hold exactly these overrides (the periodic sync from Postgres)."""
        mapping: dict[str, int] = {}
        for (kind, subject), limits in overrides.items():
            for field, value in _fields(kind, subject, limits).items():
                if value is not None:
                    mapping[field] = value
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(LIMITS_KEY)
        if mapping:
            pipe.hset(LIMITS_KEY, mapping=mapping)  # type: ignore[arg-type]
        await pipe.execute()


def _fields(kind: SubjectKind, subject: UUID, limits: Limits) -> dict[str, int | None]:
    return {
        f"{kind}:{subject}:tokens": limits.tokens_per_period,
        f"{kind}:{subject}:rpm": limits.requests_per_minute,
    }
