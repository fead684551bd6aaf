"""A webhook receiver on loopback for the tests: it verifies EVERY request's signature the way
docs/webhooks.md tells receivers to, written here from the docs, not from backend code.

Behaviour is set per test: answer 500 to the first N tries of each event, or redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import serving

TOLERANCE_SECONDS = 300


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """True if one v1 signature in ``header`` is HMAC-SHA256(secret, "<t>.<body>") and t is
    within the tolerance. The secret's own UTF-8 bytes are the key."""
    timestamp = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        return False
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return any(hmac.compare_digest(expected.hexdigest(), s) for s in signatures)


@dataclass
class Received:
    event_id: int
    headers: dict[str, str]
    body: bytes
    verified_with: list[str]  # which of the receiver's secrets verified it
    status: int = 0  # what the receiver answered

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    url: str
    secrets: list[str] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many tries of each event first
    redirect_to: str | None = None
    received: list[Received] = field(default_factory=list)  # every request, verified or not
    unverified: list[Received] = field(default_factory=list)
    _tries: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        event_id = int(headers.get("litebase-event-id", "0"))
        signature = headers.get("litebase-signature", "")
        verified = [s for s in self.secrets if verify(s, signature, body)]
        item = Received(event_id, headers, body, verified)
        with self._lock:
            self.received.append(item)
            if not verified:
                self.unverified.append(item)
                item.status = 400
                return 400
            tries = self._tries[event_id] = self._tries.get(event_id, 0) + 1
            if self.redirect_to:
                item.status = 307
            else:
                item.status = 500 if tries <= self.fail_first else 200
            return item.status

    def accepted(self) -> dict[int, Received]:
        """The last request of each event that was verified and answered 200."""
        with self._lock:
            return {r.event_id: r for r in self.received if r.status == 200}


@contextmanager
def webhook_receiver(host: str = "127.0.0.1", **options: Any) -> Iterator[Receiver]:
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver.handle(headers, body)
            self.send_response(status)
            if status == 307 and receiver.redirect_to:
                self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    receiver = Receiver(url=f"http://{host}:{server.server_address[1]}/hooks", **options)
    with serving(server):
        yield receiver
