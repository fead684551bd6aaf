"""ASGI apps bench/files.py serves beside Litebase's own.

- ``big_app``: Litebase with notes.attachments taking files up to BENCH_BIG_MAX_BYTES (the
  shipped field stops at 20 MB), for the 1 GB upload;
- ``sink``: no framework, no storage: reads a request's body and drops it. What uvicorn and the
  client move per second on this machine is the floor under any upload through the API.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any


def big_app() -> Any:
    from backend.app import create_app
    from backend.app_collections.notes import notes

    spec = notes.fields["attachments"]
    assert spec.file is not None
    limit = int(os.environ.get("BENCH_BIG_MAX_BYTES", str(2 * 1024**3)))
    notes.fields["attachments"] = replace(spec, file=replace(spec.file, max_size=limit))
    return create_app()


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        event = await receive()
        more = event.get("more_body", False) and event["type"] == "http.request"
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
