"""The model gateway: every model call in Litebase goes through ``Gateway``.

Handlers reach it as ``request.app.state.gateway``. ``body`` is an OpenAI request body whose
``model`` is an alias from the catalog (backend/ai/catalog.py). Each call

1. resolves the alias (unknown → 404 naming ``model``),
2. reserves its estimated tokens against the caller's key, user and org budgets and counts
   it against their requests per minute (over → 429 ``budget_exceeded``, before any
   upstream call),
3. tries the alias, then its fallbacks in order, moving on after a timeout, a dropped
   connection, a 5xx or 429, or malformed output (none left → 502 without upstream details),
4. settles the reservation to the tokens really used and records a usage event (both one
   Redis script, one round trip, run beside the response rather than before it: the caller
   is answered without waiting on Redis a second time; events reach Postgres in batches).

Prompt runs and RAG answers pass ``prompt=PromptUse(name, version)`` so their usage is
recorded under the prompt.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.ai.budgets import BudgetExceeded, Budgets, Reservation, capped_completion
from backend.ai.catalog import Catalog, ModelAlias
from backend.ai.usage import USAGE_QUEUE, UsageEvent
from backend.config import Settings
from backend.errors import NotFound, Rejected, Unavailable, UpstreamFailed
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.lib.upstream import ProviderClient, UpstreamError, UpstreamStream

log = logging.getLogger(__name__)

# KEYS: the ledgers the call charged, then the usage queue. ARGV: the correction from what was
# held to what was used, then the encoded usage event. One command where a pipeline of
# INCRBYs and an RPUSH cost the API more to build and parse.
SETTLE_AND_RECORD_LUA = """
local delta = tonumber(ARGV[1])
local queue = #KEYS
if delta ~= 0 then
  for i = 1, queue - 1 do redis.call('INCRBY', KEYS[i], delta) end
end
return redis.call('RPUSH', KEYS[queue], ARGV[2])
"""


@dataclass(frozen=True)
class PromptUse:
    """The prompt template a call renders (recorded with its usage)."""

    name: str
    version: str


def unknown_model(model: object) -> NotFound:
    return NotFound(
        f"The model {model!r} does not exist; GET /v1/models lists the ones you can use",
        code="model_not_found",
        errors=[{"field": "model", "message": "is not a known model alias", "source": "body"}],
    )


def bad_gateway() -> UpstreamFailed:
    return UpstreamFailed(
        "The model provider failed (and every fallback with it); try again later",
        code="upstream_error",
    )


def upstream_rejected(exc: UpstreamError) -> Rejected:
    return Rejected(
        f"The model provider refused the request: {exc.reason}",
        code="upstream_rejected",
    )


class StreamFailed(UpstreamFailed):
    """A stream broke after its first chunk: the caller has the chunks so far, no more."""

    def __init__(self) -> None:
        super().__init__("The model provider's stream broke off", code="upstream_error")


@dataclass
class _Call:
    """One call's bookkeeping, from reservation to its usage event."""

    principal: Principal
    kind: str
    model: str
    prompt: PromptUse | None
    started: float = field(default_factory=time.perf_counter)
    reservation: Reservation | None = None
    upstream_model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    content_chunks: int = 0
    streamed: bool = False
    usage_reported: bool = False
    outcome: str = "ok"

    def take_usage(self, usage: object) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"))
            self.completion_tokens = _int(usage.get("completion_tokens"))
            self.usage_reported = True


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _chunk_has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
    return False


class Gateway:
    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        redis: Redis,
        clock: Clock,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.budgets = Budgets(redis, settings)
        self._settle_and_record = redis.register_script(SETTLE_AND_RECORD_LUA)
        self._clock = clock
        self._clients = {name: ProviderClient(p) for name, p in catalog.providers.items()}
        self._settling: set[asyncio.Task[None]] = set()

    async def settled(self) -> None:
        """Wait for every call's settlement still running (before the last usage drain)."""
        while self._settling:
            await asyncio.gather(*self._settling)

    async def close(self) -> None:
        await self.settled()
        for client in self._clients.values():
            await client.close()

    def models(self) -> dict[str, Any]:
        """The /v1/models body: every alias, as OpenAI lists models."""
        return {
            "object": "list",
            "data": [self.model(name) for name in sorted(self.catalog.aliases)],
        }

    def model(self, name: str) -> dict[str, Any]:
        """One alias as OpenAI describes a model (unknown → 404 naming ``model``)."""
        alias = self.catalog.alias(name)
        if alias is None:
            raise unknown_model(name)
        return {"id": name, "object": "model", "created": 0, "owned_by": alias.provider}

    def _capped(self, body: dict[str, Any], alias: ModelAlias) -> dict[str, Any]:
        """``body`` with a completion limit, named as ``alias``'s provider takes it."""
        base_url = self.catalog.providers[alias.provider].base_url
        return capped_completion(body, self.settings, base_url)

    def _attempts(self, body: dict[str, Any]) -> tuple[ModelAlias, ...]:
        model = body.get("model")
        attempts = self.catalog.attempts(model) if isinstance(model, str) else ()
        if not attempts:
            raise unknown_model(model)
        return attempts

    async def _begin(
        self, principal: Principal, kind: str, body: dict[str, Any], prompt: PromptUse | None
    ) -> _Call:
        call = _Call(principal, kind, str(body["model"]), prompt)
        try:
            call.reservation = await self.budgets.reserve(principal, body, self._clock.now())
        except BudgetExceeded:
            call.outcome = "budget_exceeded"
            await self._finish(call)
            raise
        except RedisError as exc:
            # Without the ledgers no budget can be held: refuse rather than spend unmetered.
            log.error("budgets unavailable", extra={"error": str(exc)})
            raise Unavailable(
                "Model budgets cannot be checked right now; try again shortly",
                code="budgets_unavailable",
                headers={"Retry-After": "1"},
            ) from None
        return call

    def _finish_soon(self, call: _Call) -> None:
        """Settle beside the answer: the event is complete now (its time and latency are the
        call's end), the reservation holds until the script has run (budgets stay safe), and
        ``settled`` (on shutdown) waits for it."""
        task = asyncio.get_running_loop().create_task(self._settle(*self._settlement(call)))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _finish(self, call: _Call) -> None:
        """Settle the reservation and record the event before returning, never raising."""
        with anyio.CancelScope(shield=True):  # a cancelled caller still settles
            await self._settle(*self._settlement(call))

    def _settlement(self, call: _Call) -> tuple[list[str], list[Any], str]:
        """The settle script's keys and arguments for a call that has ended."""
        held = call.reservation
        if held and not call.usage_reported and call.outcome in ("ok", "cancelled"):
            # The provider bills what it produced (also before a client left) but reported no
            # usage: count estimates, so budgets still hold. A stream: the prompt estimate and
            # a token per streamed piece; otherwise what was reserved.
            call.prompt_tokens = held.prompt_tokens
            call.completion_tokens = (
                call.content_chunks if call.streamed else held.tokens - held.prompt_tokens
            )
        used = call.prompt_tokens + call.completion_tokens
        principal = call.principal
        event = UsageEvent(
            id=uuid.uuid4(),
            created_at=self._clock.now(),
            user_id=principal.user_id,
            api_key_id=principal.api_key_id,
            org_id=principal.org_id,
            kind=call.kind,
            model=call.model[:200],  # the column sizes: a batch must never fail on a value
            upstream_model=call.upstream_model[:200] if call.upstream_model else None,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
            outcome=call.outcome,
            prompt_name=call.prompt.name[:200] if call.prompt else None,
            prompt_version=call.prompt.version[:100] if call.prompt else None,
        )
        ledgers = held.ledgers if held else ()
        delta = used - held.tokens if held else 0
        return [*ledgers, USAGE_QUEUE], [delta, msgspec.json.encode(event)], call.model

    async def _settle(self, keys: list[str], args: list[Any], model: str) -> None:
        try:
            await self._settle_and_record(keys=keys, args=args)
        except Exception:
            log.exception("could not settle a model call's usage", extra={"model": model})

    def _failed(self, alias: ModelAlias, exc: UpstreamError) -> None:
        fields = {"alias": alias.name, "provider": alias.provider, "reason": exc.reason}
        log.warning("model call failed", extra=fields)

    async def complete(
        self, principal: Principal, body: dict[str, Any], *, prompt: PromptUse | None = None
    ) -> dict[str, Any]:
        """A chat completion (OpenAI's ``chat.completion`` body), ``model`` as asked."""
        attempts = self._attempts(body)
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}

        async def send(client: ProviderClient, alias: ModelAlias) -> dict[str, Any]:
            return await client.complete(alias, self._capped(body, alias))

        return await self._answer(principal, "chat", body, prompt, attempts, send)

    async def stream(
        self, principal: Principal, body: dict[str, Any], *, prompt: PromptUse | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """A streamed chat completion: ``chat.completion.chunk`` dicts, as OpenAI sends them.

        Problems (404 model, 429 budget, 400 refused, 502 nothing answered) are raised before
        the first chunk; a stream that breaks later raises ``StreamFailed``. Closing the
        iterator early (the client went away) closes the upstream request.
        """
        attempts = self._attempts(body)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        call = await self._begin(principal, "chat", body, prompt)
        call.streamed = True
        upstream: UpstreamStream | None = None
        try:
            pieces: AsyncIterator[dict[str, Any]] | None = None
            first: dict[str, Any] | None = None
            for alias in attempts:
                try:
                    upstream = await self._clients[alias.provider].open_stream(
                        alias, self._capped(body, alias)
                    )
                    pieces = upstream.chunks()
                    first = await anext(pieces, None)
                    if first is None:
                        raise UpstreamError("upstream stream ended before any chunk")
                except UpstreamError as exc:
                    self._failed(alias, exc)
                    await self._close(upstream)
                    upstream = None
                    if not exc.fallback:
                        call.outcome = "rejected"
                        raise upstream_rejected(exc) from None
                    continue
                call.upstream_model = alias.model
                break
            if first is None or pieces is None:
                call.outcome = "upstream_error"
                raise bad_gateway()
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                usage = chunk.get("usage")
                if usage is not None:
                    call.take_usage(usage)
                if _chunk_has_content(chunk):
                    call.content_chunks += 1
                if include_usage:
                    yield {**chunk, "model": call.model}
                elif usage is None or chunk.get("choices"):
                    yield {k: v for k, v in chunk.items() if k != "usage"} | {"model": call.model}
                try:
                    chunk = await anext(pieces, None)
                except UpstreamError as exc:
                    self._failed(alias, exc)
                    call.outcome = "upstream_error"
                    raise StreamFailed() from None
        except BaseException:
            if call.outcome == "ok":
                call.outcome = "cancelled"
            raise
        finally:
            await self._close(upstream)
            self._finish_soon(call)

    async def _close(self, upstream: UpstreamStream | None) -> None:
        if upstream is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await upstream.close()
                except Exception:
                    log.warning("closing an upstream stream failed", exc_info=True)

    async def embed(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Embeddings (OpenAI's ``list`` of ``embedding`` objects), ``model`` as asked."""
        attempts = self._attempts(body)

        async def send(client: ProviderClient, alias: ModelAlias) -> dict[str, Any]:
            return await client.embed(alias, body)

        return await self._answer(principal, "embeddings", body, None, attempts, send)

    async def _answer(
        self,
        principal: Principal,
        kind: str,
        body: dict[str, Any],
        prompt: PromptUse | None,
        attempts: tuple[ModelAlias, ...],
        send: Callable[[ProviderClient, ModelAlias], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """One JSON call: each alias in fallback order until one answers; the call's budget
        is settled and its usage recorded however it ends."""
        call = await self._begin(principal, kind, body, prompt)
        try:
            for alias in attempts:
                try:
                    data = await send(self._clients[alias.provider], alias)
                except UpstreamError as exc:
                    self._failed(alias, exc)
                    if not exc.fallback:
                        call.outcome = "rejected"
                        raise upstream_rejected(exc) from None
                    continue
                call.upstream_model = alias.model
                call.take_usage(data.get("usage"))
                return {**data, "model": call.model}
            call.outcome = "upstream_error"
            raise bad_gateway()
        except BaseException:
            if call.outcome == "ok":
                call.outcome = "cancelled"
            raise
        finally:
            self._finish_soon(call)
