"""uvicorn's WebSocket protocol, bounded: a peer that stops reading cannot hold a socket open.

uvicorn writes each frame to the transport and, once the write buffer is over its high-water
mark (the peer stopped reading and the kernel buffers are full), makes every later ``send``
wait until it drains, a close included. ``transport.close()`` waits for the same drain. So a
client that stops reading kept its connection, and with it uvicorn's shutdown, forever. Here a
close never waits for the drain (its frame is queued behind what the peer has not read), and a
connection that is not gone ``REALTIME_SEND_TIMEOUT_SECONDS`` after it was closed (by the app,
a ping timeout or a shutdown) is aborted: the buffer is dropped and the peer gets a reset.

``litebase api``, ``litebase dev`` and the e2e stack run uvicorn with this class and the ping
settings and HTTP_KEEPALIVE_SECONDS (:func:`uvicorn_options`, :func:`uvicorn_flags`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from backend.config import Settings, get_settings

PROTOCOL_PATH = "backend.realtime.transport:BoundedWebSocketProtocol"


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's own wait for the peer's close reply (10 s) becomes the send timeout too.
        self.close_timeout = get_settings().realtime_send_timeout_seconds
        self.abort_timer: asyncio.TimerHandle | None = None

    def abort_later(self) -> None:
        if self.abort_timer is None and not self.disconnected:
            self.abort_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.abort_later()

    def shutdown(self) -> None:
        super().shutdown()
        self.abort_later()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and self._stuck():
            # uvicorn would wait for the buffer to drain before even queueing the close frame.
            code = message.get("code", 1000)
            reason = message.get("reason") or ""
            self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.abort_later()
            return
        await super().send(message)
        if message["type"] == "websocket.close":
            self.abort_later()

    def _stuck(self) -> bool:
        """Open, and the peer is not taking what was written (the write buffer is paused)."""
        return (
            self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
            and not self.writable.is_set()
        )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The WebSocket and keep-alive options for ``uvicorn.run`` / ``uvicorn.Config``."""
    return {
        "timeout_keep_alive": settings.http_keepalive_seconds,
        "ws": PROTOCOL_PATH,
        "ws_ping_interval": settings.realtime_ping_interval_seconds,
        "ws_ping_timeout": settings.realtime_ping_timeout_seconds,
        # The protocol refuses a larger frame (1009) before it is read whole.
        "ws_max_size": settings.realtime_max_frame_bytes,
    }


def uvicorn_flags(settings: Settings) -> list[str]:
    """The same options as command-line flags of ``python -m uvicorn``."""
    return [
        *("--timeout-keep-alive", str(settings.http_keepalive_seconds)),
        *("--ws", PROTOCOL_PATH),
        *("--ws-ping-interval", str(settings.realtime_ping_interval_seconds)),
        *("--ws-ping-timeout", str(settings.realtime_ping_timeout_seconds)),
        *("--ws-max-size", str(settings.realtime_max_frame_bytes)),
    ]
