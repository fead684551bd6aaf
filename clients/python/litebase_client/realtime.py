"""Realtime that survives the network: reconnects with backoff, re-authenticates, and resumes
every collection subscription from the last event it received, so nothing is missed or
repeated."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

if TYPE_CHECKING:
    from litebase_client.client import Litebase

STATES = ("connecting", "open", "reconnecting", "closed")


class RealtimeError(Exception):
    """The server said no: ``code`` is its error code (``history_gone``, ``bad_filter``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Subscription:
    def __init__(self, realtime: Realtime, sub_id: str, channel: str, **options: Any) -> None:
        self.realtime = realtime
        self.id = sub_id
        self.channel = channel
        self.options = options
        self.last_event_id: int | None = options.pop("since", None)
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._seen: deque[int] = deque(maxlen=10_000)
        # Set when the server answers this (re)subscription, with `subscribed` or an error.
        self._answered = asyncio.Event()

    async def confirmed(self, within: float = 10) -> None:
        """Wait until the server has answered the subscription: after this, every change it
        admits reaches it (an error answer comes out of ``next``)."""
        await asyncio.wait_for(self._answered.wait(), within)

    def frame(self) -> dict[str, Any]:
        self._answered.clear()  # sent (again): the answer to wait for is the next one
        frame = {"type": "subscribe", "id": self.id, "channel": self.channel, **self.options}
        if self.last_event_id is not None:
            frame["since"] = self.last_event_id
        return frame

    def _offer(self, frame: dict[str, Any]) -> None:
        event_id = frame.get("event_id")
        if event_id is not None:
            if event_id in self._seen:
                return
            self._seen.append(event_id)
            self.last_event_id = max(self.last_event_id or 0, event_id)
        self._queue.put_nowait(frame)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            frame = await self._queue.get()
            if frame.get("type") == "error":
                raise RealtimeError(frame["code"], frame.get("message", ""))
            yield frame

    async def next(self, within: float | None = None) -> dict[str, Any]:
        """The next frame, waiting at most ``within`` seconds (TimeoutError after)."""
        return await asyncio.wait_for(anext(self._events()), within)

    async def close(self) -> None:
        await self.realtime.unsubscribe(self)


class Realtime:
    def __init__(
        self,
        client: Litebase,
        *,
        on_state: Callable[[str], None] | None = None,
        max_backoff: float = 10.0,
    ) -> None:
        self.client = client
        self.url = client.base_url.replace("http", "ws", 1) + "/realtime"
        self.on_state = on_state
        self.max_backoff = max_backoff
        self.state = "closed"
        self.subscriptions: dict[str, Subscription] = {}
        self._ws: Any = None
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._counter = 0

    async def __aenter__(self) -> Realtime:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_state("closed")

    async def wait_open(self, within: float = 10) -> None:
        await asyncio.wait_for(self._open.wait(), within)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    async def subscribe(self, channel: str, **options: Any) -> Subscription:
        """Subscribe (``filter=``, ``since=``, ``self=`` as the protocol has them)."""
        self._counter += 1
        subscription = Subscription(self, f"s{self._counter}", channel, **options)
        self.subscriptions[subscription.id] = subscription
        if self._open.is_set():
            await self._send(subscription.frame())
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.pop(subscription.id, None)
        if self._open.is_set():
            await self._send({"type": "unsubscribe", "id": subscription.id})

    async def broadcast(self, channel: str, event: str, payload: Any = None) -> None:
        await self._send(
            {"type": "broadcast", "channel": channel, "event": event, "payload": payload}
        )

    async def presence(self, channel: str, state: dict[str, Any]) -> None:
        await self._send({"type": "presence", "channel": channel, "state": state})

    async def _send(self, frame: dict[str, Any]) -> None:
        await self._open.wait()
        await self._ws.send(json.dumps(frame))

    async def _run(self) -> None:
        backoff, first = 0.2, True
        while True:
            self._set_state("connecting" if first else "reconnecting")
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            # A dead network fails anywhere: connecting, the handshake (a proxy that closes),
            # refreshing the token over HTTP. Each is one more try, never the end.
            except (
                OSError,
                ConnectionClosed,
                InvalidHandshake,
                TimeoutError,
                RealtimeError,
                httpx.TransportError,
            ):
                pass
            if self._open.is_set():  # it was up: a new outage starts from a short wait
                backoff = 0.2
            self._open.clear()
            first = False
            await asyncio.sleep(min(self.max_backoff, backoff) * random.uniform(0.5, 1.5))  # noqa: S311
            backoff *= 2

    async def _session(self) -> None:
        async with websockets.connect(self.url) as ws:
            self._ws = ws
            await ws.send(json.dumps({"type": "auth", "token": await self.client.token()}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ready.get("type") != "ready":
                raise RealtimeError(ready.get("code", "not_ready"), str(ready))
            for subscription in self.subscriptions.values():  # resume where each left off
                await ws.send(json.dumps(subscription.frame()))
            self._open.set()
            self._set_state("open")
            async for raw in ws:
                await self._dispatch(json.loads(raw))

    async def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "error" and frame.get("code") == "token_expired":
            await self.client.refresh()
            await self._ws.send(json.dumps({"type": "auth", "token": await self.client.token()}))
            return
        target = frame.get("sub") or frame.get("ref")
        if target is None and kind in ("broadcast", "presence"):
            for subscription in self.subscriptions.values():
                if subscription.channel == frame.get("channel"):
                    subscription._offer(frame)
            return
        if kind == "subscribed":
            target = frame.get("id")
        subscription = self.subscriptions.get(target) if isinstance(target, str) else None
        if subscription is not None and kind in ("subscribed", "error"):
            subscription._answered.set()
        if subscription is not None and kind in ("event", "error"):
            subscription._offer(frame)
