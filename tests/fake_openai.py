"""A fake OpenAI-compatible upstream on loopback, speaking the real wire format.

Model providers are the one thing tests do not run for real. This server answers
``POST /v1/embeddings`` like OpenAI does (JSON, ``data[i].embedding``, ``usage``), with
deterministic lexical vectors (the hash embedder), and misbehaves on request so the callers'
error handling is exercised over real HTTP:

- an input containing ``[[429]]`` is always refused with 429 (rate limited), with OpenAI's
  ``retry-after-ms`` header (20 ms);
- an input containing ``[[500-once]]`` fails with 500 the first time that exact input is seen;
- an input containing any string in ``state.outages`` fails with 503 for as long as it is
  there (a provider down for a while: add a marker, remove it to recover);
- an input containing ``[[slow]]`` is answered after ``state.slow_seconds``;
- ``GET /_stats`` tells how many requests and inputs the server has embedded.

``POST /v1/chat/completions`` answers ``echo: <last message>`` as JSON or, with
``stream: true``, as server-sent ``chat.completion.chunk`` events ending in ``data: [DONE]``
(one chunk per word; a usage chunk when ``stream_options.include_usage``). It honours ``n``,
``max_tokens`` (finish_reason ``length``), ``stop``, ``tools`` (a call to the first tool) and
``response_format`` json_object; a token is a word. The upstream *model* picks a misbehaviour:

- ``fake-500`` / ``fake-429`` / ``fake-400``: that status, OpenAI's error body;
- ``fake-slow``: answers after ``state.slow_seconds``;
- ``fake-malformed``: 200 whose JSON body does not parse; ``fake-wrong-shape``: 200 JSON
  without ``choices``; ``fake-garbage-sse``: a stream whose first event is not JSON;
  ``fake-broken-sse``: a stream that breaks after its first chunk;
- ``fake-no-usage``: answers (JSON or stream) without reporting usage, as some servers do;
- ``fake-trickle``: a stream of ``state.trickle_chunks`` chunks, one per
  ``state.trickle_seconds``, that notices a client going away.

``state.calls`` lists every POST received (path, body, Authorization) and ``state.streams``
how each stream ended (``completed``, ``cancelled`` when the client closed it early).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from backend.vectors.embedders import HashEmbedder


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    authorization: str


@dataclass
class StreamRecord:
    body: dict[str, Any]
    chunks_sent: int = 0
    outcome: str = "open"  # then completed, cancelled or broken
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass
class FakeState:
    requests: int = 0
    inputs: int = 0
    failures: int = 0
    seen: set[str] = field(default_factory=set)
    outages: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[Call] = field(default_factory=list)
    streams: list[StreamRecord] = field(default_factory=list)
    slow_seconds: float = 2.0
    trickle_seconds: float = 0.05
    trickle_chunks: int = 200

    def calls_with(self, marker: str) -> list[Call]:
        """The calls whose body mentions ``marker`` (tests tag their requests with one)."""
        with self.lock:
            return [call for call in self.calls if marker in json.dumps(call.body)]

    def streams_with(self, marker: str) -> list[StreamRecord]:
        with self.lock:
            return [s for s in self.streams if marker in json.dumps(s.body)]


def _words(text: str) -> list[str]:
    return text.split()


def _prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(_words(content))
        elif isinstance(content, list):
            total += sum(len(_words(str(part.get("text", "")))) for part in content)
    return total


def _choice_text(body: dict[str, Any]) -> tuple[str, str]:
    """(reply text, finish_reason) for a chat body, honouring max_tokens and stop."""
    messages = body.get("messages") or [{}]
    last = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
    reply = f"echo: {last if isinstance(last, str) else json.dumps(last)}"
    if (body.get("response_format") or {}).get("type") == "json_object":
        reply = json.dumps({"echo": last})
    finish = "stop"
    stops = body.get("stop")
    for stop in [stops] if isinstance(stops, str) else stops or []:
        if stop and stop in reply:
            reply = reply[: reply.index(stop)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    words = _words(reply)
    if limit and len(words) > limit:
        reply, finish = " ".join(words[:limit]), "length"
    return reply, finish


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    if not tools or body.get("tool_choice") == "none":
        return None
    return {
        "id": "call_fake_1",
        "type": "function",
        "function": {"name": tools[0]["function"]["name"], "arguments": "{}"},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK hold each response back by ~40 ms.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

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
        state = self.server.state
        authorization = self.headers.get("Authorization", "")
        with state.lock:
            state.calls.append(Call(self.path, body, authorization))
        if not authorization.startswith("Bearer "):
            self._error(401, "missing API key", "invalid_request_error")
        elif self.path == "/v1/embeddings":
            self._embeddings(body)
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._error(404, "not found", "invalid_request_error")

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if model in ("fake-500", "fake-429", "fake-400"):
            status = int(model[-3:])
            kind = {500: "server_error", 429: "rate_limit_exceeded"}.get(status)
            self._error(status, f"upstream says {status}", kind or "invalid_request_error")
            return
        if model == "fake-slow":
            time.sleep(self.server.state.slow_seconds)
        if model == "fake-malformed":
            self._send_raw(200, b'{"id": "chatcmpl-1", "choices": [', "application/json")
            return
        if model == "fake-wrong-shape":
            self._send(200, {"object": "chat.completion", "id": "chatcmpl-1"})
            return
        if body.get("stream"):
            self._chat_stream(body, model)
            return
        n = int(body.get("n") or 1)
        reply, finish = _choice_text(body)
        call = _tool_call(body)
        message: dict[str, Any] = {"role": "assistant", "content": reply, "refusal": None}
        if call:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        prompt = _prompt_tokens(body)
        completion = n * len(_words(reply))
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        self._send(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                    for i in range(n)
                ],
                **({} if model == "fake-no-usage" else {"usage": usage}),
            },
        )

    def _send_raw(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _chat_stream(self, body: dict[str, Any], model: str) -> None:
        state = self.server.state
        record = StreamRecord(body)
        with state.lock:
            state.streams.append(record)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        include_usage = include_usage and model != "fake-no-usage"
        reply, finish = _choice_text(body)
        words = _words(reply)
        if model == "fake-trickle":
            words = [f"w{i}" for i in range(state.trickle_chunks)]
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            event: dict[str, Any] = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                event["usage"] = None
            return event

        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            if model == "fake-garbage-sse":
                self._event(b"this is not json")
                record.outcome = "broken"
                return
            self._event(json.dumps(chunk({"role": "assistant", "content": "", "refusal": None})))
            record.chunks_sent += 1
            if model == "fake-broken-sse":
                self._event(b'{"id": "chatcmpl-fake", "choices": [')
                record.outcome = "broken"
                return
            for i, word in enumerate(words):
                if model == "fake-trickle":
                    time.sleep(state.trickle_seconds)
                self._event(json.dumps(chunk({"content": word if i == 0 else f" {word}"})))
                record.chunks_sent += 1
            self._event(json.dumps(chunk({}, finish)))
            if include_usage:
                prompt = _prompt_tokens(body)
                usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(words),
                    "total_tokens": prompt + len(words),
                }
                final = {**chunk({}), "choices": [], "usage": usage}
                self._event(json.dumps(final))
            self._event(b"[DONE]")
            record.outcome = "completed"
        except (BrokenPipeError, ConnectionResetError):
            record.outcome = "cancelled"
        finally:
            record.ended.set()

    def _event(self, data: str | bytes) -> None:
        payload = data.encode() if isinstance(data, str) else data
        self.wfile.write(b"data: " + payload + b"\n\n")
        self.wfile.flush()

    def _embeddings(self, body: dict[str, Any]) -> None:
        state = self.server.state
        data = body["input"]
        texts = data if isinstance(data, list) else [data]
        if texts and all(isinstance(x, int) for x in texts):
            texts = [data]  # one input given as token ids
        # Token ids are embedded as their text, so they get a vector like any input.
        texts = [t if isinstance(t, str) else " ".join(map(str, t)) for t in texts]
        with state.lock:
            if any("[[429]]" in text for text in texts):
                state.failures += 1
                # As OpenAI does: how long to wait, which clients honour before retrying.
                self._error(
                    429, "Rate limit reached", "rate_limit_exceeded", {"retry-after-ms": "20"}
                )
                return
            if any(marker in text for marker in state.outages for text in texts):
                state.failures += 1
                self._error(503, "The service is temporarily unavailable", "server_error")
                return
            once = [t for t in texts if "[[500-once]]" in t and t not in state.seen]
            if once:
                state.seen.update(once)
                state.failures += 1
                self._error(500, "The server had an error", "server_error")
                return
            state.requests += 1
            state.inputs += len(texts)
        if any("[[slow]]" in text for text in texts):
            time.sleep(state.slow_seconds)
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
    request_queue_size = 256  # many clients connecting at once (benchmarks)
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
