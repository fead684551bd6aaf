"""Calls to one provider's OpenAI-compatible API, with the openai client and its base_url.

Bodies go through untouched but for ``model`` (the upstream name) and, on streams,
``stream_options.include_usage``. Every failure is an ``UpstreamError`` saying whether
another alias may do better (``fallback``): timeouts, dropped connections, 5xx, 429 and
malformed output may; a 400/413/422 says the request itself is at fault and would fail
everywhere. Messages carry no upstream URL, key or body: they are logged, never shown.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import openai
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient

from backend.ai.catalog import ModelAlias, Provider

# The request is at fault: trying another model would not help.
CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})


class UpstreamError(Exception):
    def __init__(self, reason: str, *, fallback: bool = True, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fallback = fallback
        self.status = status


def _status_error(exc: openai.APIStatusError) -> UpstreamError:
    status = exc.status_code
    if status in CLIENT_FAULT_STATUSES:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else None
        return UpstreamError(
            str(message or "the request was refused")[:300], fallback=False, status=status
        )
    return UpstreamError(f"upstream answered {status}", status=status)


def translate(exc: Exception) -> UpstreamError:
    """The UpstreamError for whatever the openai client (or a bad payload) raised."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamError("upstream timed out")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamError("upstream connection failed")
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc)
    if isinstance(exc, openai.APIError):
        return UpstreamError("upstream reported an error mid-stream")
    if isinstance(exc, ValueError | json.JSONDecodeError | KeyError | TypeError):
        return UpstreamError("upstream output is malformed")
    raise exc


def check_completion(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamError("upstream output is malformed")
    return data


def check_chunk(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices", []), list):
        raise UpstreamError("upstream output is malformed")
    return data


def check_embeddings(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UpstreamError("upstream output is malformed")
    return data


class ProviderClient:
    """One AsyncOpenAI per provider (its connection pool is shared by every alias on it)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        # Retries are per alias (request options); the client itself never retries. The
        # aiohttp transport costs about half the CPU of the default one per call (bench/).
        self._client = AsyncOpenAI(
            base_url=provider.base_url,
            api_key=provider.api_key,
            max_retries=0,
            http_client=DefaultAioHttpClient(),
        )

    async def close(self) -> None:
        await self._client.close()

    def _options(self, alias: ModelAlias) -> Any:
        return {"timeout": alias.timeout_seconds, "max_retries": alias.retries}

    async def complete(self, alias: ModelAlias, body: dict[str, Any]) -> dict[str, Any]:
        try:
            data = await self._client.post(
                "/chat/completions",
                body={**body, "model": alias.model},
                cast_to=object,
                options=self._options(alias),
            )
        except Exception as exc:
            raise translate(exc) from exc
        return check_completion(data)

    async def open_stream(self, alias: ModelAlias, body: dict[str, Any]) -> AsyncStream[object]:
        """Start a stream; the caller reads it with ``chunks`` and must close it."""
        options = body.get("stream_options")
        stream_options = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        try:
            stream = await cast(Any, self._client).post(
                "/chat/completions",
                body={
                    **body,
                    "model": alias.model,
                    "stream": True,
                    "stream_options": stream_options,
                },
                cast_to=object,
                options=self._options(alias),
                stream=True,
                stream_cls=AsyncStream[object],
            )
        except Exception as exc:
            raise translate(exc) from exc
        return cast(AsyncStream[object], stream)

    async def embed(self, alias: ModelAlias, body: dict[str, Any]) -> dict[str, Any]:
        try:
            data = await self._client.post(
                "/embeddings",
                body={**body, "model": alias.model},
                cast_to=object,
                options=self._options(alias),
            )
        except Exception as exc:
            raise translate(exc) from exc
        return check_embeddings(data)


async def chunks(stream: AsyncStream[object]) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks, each checked; any failure becomes an UpstreamError."""
    iterator = stream.__aiter__()
    while True:
        try:
            data = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise translate(exc) from exc
        yield check_chunk(data)
