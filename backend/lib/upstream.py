"""How Litebase calls an OpenAI-compatible provider (``/chat/completions``, ``/embeddings``).

The one transport for every model call: the gateway's (backend/ai) and the ``openai``
embedding provider's (backend/vectors, in the API for queries and in workers for records;
docs/decisions/0012-one-embeddings-transport.md). It speaks OpenAI's wire format to every
provider (OpenAI, vLLM, Ollama, LM Studio, TGI…) over aiohttp, the transport the openai client
itself runs on, without the client's request building and parsing, which cost a call about
four times the CPU of the HTTP exchange (docs/decisions/0006-gateway-transport.md). What the
client did is kept, in OpenAI's terms: the bearer key, a timeout for connecting and for each
read, retries of timeouts, dropped connections, 408/409/429/5xx with exponential backoff and
jitter (honouring ``retry-after`` and ``x-should-retry``), certifi's CAs or SSL_CERT_FILE,
proxies from HTTPS_PROXY / NO_PROXY, and server-sent events ending in ``[DONE]``.

Bodies go through untouched but for ``model`` (the upstream name) and, on streams,
``stream_options.include_usage``. Every failure is an ``UpstreamError`` saying whether
another alias may do better (``fallback``): timeouts, dropped connections, 5xx, 429 and
malformed output may; a 400/413/422 says the request itself is at fault and would fail
everywhere. ``retry`` says whether the same provider may answer if asked again (a caller with
retries of its own, such as the embedding task, retries exactly those). Messages carry no
upstream URL, key or body: they are logged, never shown. Traced (backend/lib/tracing.py), each
call, retries included, is one client span.

Standalone: callers pass where a provider is (``Endpoint``, e.g. the gateway's ``Provider``)
and how to call one model on it (``CallPolicy``, e.g. a gateway alias).
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp
import certifi
import msgspec

from backend.lib.tracing import AttributeValue, client_span

T = TypeVar("T")

# Where the OpenAI API is, for a provider that names no other base URL.
OPENAI_BASE_URL = "https://api.openai.com/v1"
# The key sent to a provider configured without one: local servers (Ollama, vLLM) need none,
# and OpenAI answers 401 rather than a request going out without the header.
NO_KEY = "unused"

# The request is at fault: trying another model would not help.
CLIENT_FAULT_STATUSES = frozenset({400, 413, 422})
# What the openai client retries besides timeouts and dropped connections.
RETRY_STATUSES = frozenset({408, 409, 429})
# The openai client's backoff: 0.5 s doubling to 8 s, less up to a quarter (jitter); a
# provider's own retry-after is honoured up to a minute. Kept by decisions 0006 and 0012 (this
# transport keeps the client's retry rules; it waits inside one async call, not a Celery task).
INITIAL_RETRY_SECONDS, MAX_RETRY_SECONDS, MAX_RETRY_AFTER_SECONDS = 0.5, 8.0, 60.0
# An SSE line (one chunk of JSON) may be this long; aiohttp's default is 64 KiB.
MAX_LINE_BYTES = 2**20
# Connections per provider and process: streams hold one for their whole length.
MAX_CONNECTIONS = 1000


class Endpoint(Protocol):
    """A provider: its base URL (ending before ``/chat/completions``) and its key."""

    @property
    def base_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


class CallPolicy(Protocol):
    """One model on a provider: its upstream name, the timeout for connecting and for each
    read, and how many times a failure the provider may get over is tried again."""

    @property
    def model(self) -> str: ...

    @property
    def timeout_seconds(self) -> float: ...

    @property
    def retries(self) -> int: ...


class UpstreamError(Exception):
    def __init__(
        self,
        reason: str,
        *,
        fallback: bool = True,
        status: int | None = None,
        retry: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fallback = fallback
        self.status = status
        self.retry = retry  # the same alias may answer if asked again
        self.retry_after = retry_after


def status_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The UpstreamError for a non-2xx answer (OpenAI's error body: ``{"error": {...}}``)."""
    if status in CLIENT_FAULT_STATUSES:
        return UpstreamError(
            (_error_message(body) or "the request was refused")[:300],
            fallback=False,
            status=status,
        )
    should = headers.get("x-should-retry")
    retry = should == "true" or (should != "false" and (status in RETRY_STATUSES or status >= 500))
    return UpstreamError(
        f"upstream answered {status}",
        status=status,
        retry=retry,
        retry_after=_retry_after(headers),
    )


def _error_message(body: bytes) -> str | None:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    error = data.get("error", data) if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(headers.get(name, "")) * scale
        except ValueError:
            continue  # absent, or an HTTP date: the backoff decides
        if 0 < seconds <= MAX_RETRY_AFTER_SECONDS:
            return seconds
    return None


def translate(exc: Exception) -> UpstreamError:
    """The UpstreamError for whatever the transport (or a bad payload) raised."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return UpstreamError("upstream timed out", retry=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamError("upstream connection failed", retry=True)
    # msgspec.DecodeError is a ValueError only from msgspec 0.21 on.
    if isinstance(exc, ValueError | KeyError | TypeError | msgspec.DecodeError):
        return UpstreamError("upstream output is malformed")
    raise exc


def backoff_seconds(attempt: int) -> float:
    """How long to wait before retry ``attempt`` (0 for the first retry)."""
    delay: float = min(INITIAL_RETRY_SECONDS * 2.0**attempt, MAX_RETRY_SECONDS)
    return delay * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not a secret


def check_completion(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise UpstreamError("upstream output is malformed")
    return data


def check_chunk(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("choices", []), list):
        raise UpstreamError("upstream output is malformed")
    if data.get("error"):  # a failure mid-stream is an event carrying `error` (as openai reads it)
        raise UpstreamError("upstream reported an error mid-stream")
    return data


def check_embeddings(data: object) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UpstreamError("upstream output is malformed")
    return data


class UpstreamStream:
    """An open streamed completion: ``chunks()`` reads it, ``close()`` ends it (early, it
    drops the connection, which tells the provider to stop generating)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def close(self) -> None:
        self._response.close()

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Each event's JSON, checked, until ``[DONE]`` or the end; failures are
        UpstreamErrors. Events are lines of ``data:`` ended by a blank line; other fields
        (``event:``, ``id:``, comments) carry nothing a chat chunk needs."""
        data: list[bytes] = []
        try:
            async for raw in self._response.content:
                line = raw.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(b" ") else value)
                elif not line and data:
                    payload, data = b"\n".join(data), []
                    if _is_done(payload):
                        return
                    yield check_chunk(msgspec.json.decode(payload))
            payload = b"\n".join(data)  # an event the stream's end cut short of its blank line
            if data and not _is_done(payload):
                yield check_chunk(msgspec.json.decode(payload))
        except Exception as exc:
            raise translate(exc) from exc


def _is_done(payload: bytes) -> bool:
    return payload.strip() == b"[DONE]"


def proxy_for(url: str) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The environment's proxy for ``url`` (HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY covers
    its host), read once per session: aiohttp's ``trust_env`` reads it, and ~/.netrc on a
    thread, on every request."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None, None
    proxy_url = urlsplit(proxy)
    if proxy_url.username is None:
        return proxy, None
    bare = proxy_url._replace(netloc=proxy_url.netloc.rsplit("@", 1)[1]).geturl()
    return bare, aiohttp.BasicAuth(unquote(proxy_url.username), unquote(proxy_url.password or ""))


class ProviderClient:
    """One aiohttp session per provider (its connection pool is shared by every alias on
    it), made on first use in the running event loop."""

    def __init__(self, provider: Endpoint, *, user_agent: str = "litebase-gateway") -> None:
        self.provider = provider
        self._base_url = provider.base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {provider.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._session: aiohttp.ClientSession | None = None
        self._server = urlsplit(self._base_url).hostname or ""

    def _http(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed or session.loop is not asyncio.get_running_loop():
            # As the openai client (httpx) did: certifi's CAs unless SSL_CERT_FILE names a
            # bundle, and HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment.
            trusted = ssl.create_default_context(
                cafile=os.environ.get("SSL_CERT_FILE") or certifi.where()
            )
            proxy, proxy_auth = proxy_for(self._base_url)
            session = self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=trusted),
                read_bufsize=MAX_LINE_BYTES,
                proxy=proxy,
                proxy_auth=proxy_auth,
            )
        return session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def _span_attributes(self, operation: str, call: CallPolicy) -> dict[str, AttributeValue]:
        # OpenTelemetry's GenAI conventions; no prompt or answer (they may be personal).
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": call.model,
            "server.address": self._server,
        }
        # The gateway's alias and provider names, where the caller has them (the embedder not).
        for key, value in (
            ("litebase.model_alias", getattr(call, "name", None)),
            ("gen_ai.provider.name", getattr(self.provider, "name", None)),
        ):
            if isinstance(value, str):
                attributes[key] = value
        return attributes

    async def complete(self, call: CallPolicy, body: dict[str, Any]) -> dict[str, Any]:
        path = "/chat/completions"
        with client_span(f"chat {call.model}", self._span_attributes("chat", call)):
            return check_completion(
                await self._retrying(call, lambda: self._post_json(call, path, body))
            )

    async def embed(self, call: CallPolicy, body: dict[str, Any]) -> dict[str, Any]:
        path = "/embeddings"
        with client_span(f"embeddings {call.model}", self._span_attributes("embeddings", call)):
            return check_embeddings(
                await self._retrying(call, lambda: self._post_json(call, path, body))
            )

    async def open_stream(self, call: CallPolicy, body: dict[str, Any]) -> UpstreamStream:
        """Start a stream; the caller reads its ``chunks()`` and must ``close()`` it."""
        options = body.get("stream_options")
        stream_options = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        sent = {**body, "stream": True, "stream_options": stream_options}

        async def open_once() -> UpstreamStream:
            response = await self._send(call, "/chat/completions", sent)
            if response.status >= 300:
                try:
                    raise status_error(response.status, await response.read(), response.headers)
                finally:
                    response.release()
            return UpstreamStream(response)

        # The span ends when the answer starts (the stream is read after it returns).
        with client_span(f"chat {call.model}", self._span_attributes("chat", call)):
            return await self._retrying(call, open_once)

    async def _post_json(self, call: CallPolicy, path: str, body: dict[str, Any]) -> object:
        response = await self._send(call, path, body)
        async with response:
            payload = await response.read()
            if response.status >= 300:
                raise status_error(response.status, payload, response.headers)
            return msgspec.json.decode(payload)

    async def _send(
        self, call: CallPolicy, path: str, body: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        # As the openai client's timeout: for connecting and for each read, not the whole
        # answer (a long stream is fine while it keeps coming).
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=call.timeout_seconds, sock_read=call.timeout_seconds
        )
        return await self._http().post(
            self._base_url + path,
            data=msgspec.json.encode({**body, "model": call.model}),
            headers=self._headers,
            timeout=timeout,
            allow_redirects=False,
        )

    async def _retrying(self, call: CallPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, and up to ``call.retries`` more times while the failure is one
        the same provider may get over; every failure comes out an UpstreamError."""
        for tried in range(call.retries + 1):
            try:
                return await attempt()
            except Exception as exc:
                error = translate(exc)
                if not error.retry or tried == call.retries:
                    raise error from exc
            await asyncio.sleep(error.retry_after or backoff_seconds(tried))
        raise AssertionError("unreachable")  # pragma: no cover
