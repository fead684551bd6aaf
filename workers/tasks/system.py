"""system.ping: proves a broker round trip through a real worker."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="system.ping", bind=True)
def ping(self: Any, payload: str = "pong") -> dict[str, str]:
    return {"payload": payload, "worker": str(self.request.hostname)}
