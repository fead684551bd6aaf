"""GET /realtime: the WebSocket endpoint (DESIGN, "Realtime protocol")."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket

from backend.realtime.connection import RealtimeConnection
from backend.realtime.hub import RealtimeHub


@websocket("/realtime", name="realtime")
async def realtime(socket: WebSocket[Any, Any, Any]) -> None:
    hub: RealtimeHub = socket.app.state.realtime
    if not hub.allows_origin(socket.headers.get("origin")):
        # Closing before accepting refuses the handshake with 403 (cross-site hijacking).
        await socket.close(code=1008, reason="origin not allowed")
        return
    await RealtimeConnection(socket, hub).serve()
