"""A multipart/form-data body read part by part as it arrives: a file part's bytes are handed
on (to storage) chunk by chunk, never gathered whole. ``multipart``'s PushMultipartParser does
the parsing; this feeds it the ASGI body and bounds it (FILES_MAX_UPLOAD_BYTES, FILES_MAX_PARTS).

The body is read from the ASGI ``receive`` itself: Litestar's ``request.stream()`` holds a
route to MAX_BODY_BYTES, which is right for the JSON bodies of the same routes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from litestar import Request
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from backend.errors import Invalid, TooLarge, invalid_field

_ENDED = object()  # the body is over (the parser's own end of a part is None)


class ClientGone(Exception):
    """The client hung up before its body ended."""


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str | None  # None: a form field, not a file
    content_type: str | None


def boundary_of(request: Request[Any, Any, Any]) -> bytes:
    """The body's boundary, from ``Content-Type: multipart/form-data; boundary=…``."""
    _, options = request.content_type
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise invalid_field(
            "A multipart body needs a boundary in its Content-Type",
            "Content-Type",
            "no boundary",
            "header",
        )
    return boundary.encode("latin-1", "replace")


def too_large(detail: str, field: str = "body") -> TooLarge:
    return TooLarge(detail, errors=[{"field": field, "message": detail, "source": "body"}])


async def _body(request: Request[Any, Any, Any], limit: int) -> AsyncIterator[bytes]:
    announced = request.content_length
    message = f"The upload is larger than the server takes ({limit} bytes, FILES_MAX_UPLOAD_BYTES)"
    if announced is not None and announced > limit:
        raise too_large(message)
    received = 0
    async for chunk in body_chunks(request):
        received += len(chunk)
        if received > limit:
            raise too_large(message)
        yield chunk


async def body_chunks(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    """The request's body as the server hands it on; ClientGone when the client hangs up."""
    while True:
        event = await request.receive()
        if event["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = event.get("body", b"")  # type: ignore[assignment]
        if chunk:
            yield chunk
        if not event.get("more_body", False):
            return


class MultipartReader:
    """``async for part in reader.parts()``: each part's headers; read a file part's bytes with
    ``reader.data()`` before asking for the next (what is not read is skipped)."""

    def __init__(self, request: Request[Any, Any, Any], *, max_bytes: int, max_parts: int) -> None:
        self._body = _body(request, max_bytes)
        self._parser = PushMultipartParser(boundary_of(request), max_segment_count=max_parts)
        self._max_parts = max_parts
        self._events: deque[Any] = deque()
        self._in_part = False
        self._ended = False

    async def _next_event(self) -> Any:
        while not self._events:
            if self._ended:
                return _ENDED
            chunk = await anext(self._body, b"")
            try:
                events = [
                    bytes(e) if isinstance(e, bytes | bytearray | memoryview) else e
                    for e in self._parser.parse(chunk)
                ]
            except ParserLimitReached:
                raise too_large(
                    f"A multipart body has at most {self._max_parts} parts (FILES_MAX_PARTS)"
                ) from None
            except ParserError as exc:
                raise Invalid(f"The multipart body is not valid: {exc}") from None
            self._events.extend(events)
            if not chunk:
                self._ended = True
                if not self._parser.closed:
                    raise Invalid("The multipart body ended before its closing boundary")
        return self._events.popleft()

    async def parts(self) -> AsyncIterator[Part]:
        while True:
            if self._in_part:
                async for _ in self.data():
                    pass
            event = await self._next_event()
            if event is _ENDED:
                return
            if not isinstance(event, MultipartSegment):
                continue
            self._in_part = True
            yield Part(name=event.name, filename=event.filename, content_type=event.content_type)

    async def data(self) -> AsyncIterator[bytes]:
        """The current part's bytes, as they arrive."""
        while self._in_part:
            event = await self._next_event()
            if event is _ENDED or isinstance(event, MultipartSegment):
                raise Invalid("The multipart body ended inside a part")
            if not event:  # the part's end
                self._in_part = False
                return
            yield event

    async def text(self, limit: int) -> str:
        """The current part whole, as text (a form field), at most ``limit`` bytes."""
        gathered = bytearray()
        async for chunk in self.data():
            gathered += chunk
            if len(gathered) > limit:
                raise too_large(f"A form field is larger than {limit} bytes (MAX_BODY_BYTES)")
        try:
            return gathered.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("A form field is not UTF-8 text") from None
