"""A fake OpenAI-compatible upstream on loopback, speaking the real wire format.

Model providers are the one thing tests do not run for real. This server answers
``POST /v1/embeddings`` like OpenAI does (JSON, ``data[i].embedding``, ``usage``), with
deterministic lexical vectors (the hash embedder), and misbehaves on request so the callers'
error handling is exercised over real HTTP:

- an input containing ``[[429]]`` is always refused with 429 (rate limited);
- an input containing ``[[500-once]]`` fails with 500 the first time that exact input is seen;
- ``GET /_stats`` tells how many requests and inputs the server has embedded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.vectors.embedders import HashEmbedder


@dataclass
class FakeState:
    requests: int = 0
    inputs: int = 0
    failures: int = 0
    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": None}})

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_stats":
            self._send(
                200,
                {"requests": state.requests, "inputs": state.inputs, "failures": state.failures},
            )
        else:
            self._error(404, "not found", "invalid_request_error")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._error(401, "missing API key", "invalid_request_error")
        elif self.path == "/v1/embeddings":
            self._embeddings(body)
        else:
            self._error(404, "not found", "invalid_request_error")

    def _embeddings(self, body: dict[str, Any]) -> None:
        state = self.server.state
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with state.lock:
            if any("[[429]]" in text for text in texts):
                state.failures += 1
                self._error(429, "Rate limit reached", "rate_limit_exceeded")
                return
            once = [t for t in texts if "[[500-once]]" in t and t not in state.seen]
            if once:
                state.seen.update(once)
                state.failures += 1
                self._error(500, "The server had an error", "server_error")
                return
            state.requests += 1
            state.inputs += len(texts)
        embedder = HashEmbedder("fake", int(body.get("dimensions") or 64))
        vectors = embedder.embed(texts)
        tokens = sum(len(text.split()) for text in texts)
        self._send(
            200,
            {
                "object": "list",
                "data": [
                    {"object": "embedding", "index": i, "embedding": vector}
                    for i, vector in enumerate(vectors)
                ],
                "model": body.get("model", "fake"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


@dataclass
class FakeOpenAI:
    base_url: str  # ends in /v1, as the openai client wants it
    state: FakeState


@contextmanager
def fake_openai() -> Iterator[FakeOpenAI]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = FakeState()
    thread = threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True)
    thread.start()
    try:
        yield FakeOpenAI(f"http://127.0.0.1:{server.server_address[1]}/v1", server.state)
    finally:
        server.shutdown()
        server.server_close()
