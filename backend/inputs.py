"""Checks on decoded request input that hold for every route.

Postgres ``text`` and ``jsonb`` cannot hold the NUL character (``\\u0000``): a string carrying
one, anywhere it is stored or compared in SQL, fails in the driver as a 500. So one hook refuses
NUL in path parameters, query parameters and JSON bodies with a 422 naming each field at fault,
instead of a check per route that a new route would forget.

A time must name its offset and fall within years 1 to 9999 once moved to UTC (Python and the
driver both convert to UTC): ``utc_field`` says so instead of an OverflowError.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request

from backend.errors import Invalid
from backend.lib.clock import as_utc

NUL = "\x00"
# How a NUL reaches a JSON body (a raw 0 byte is not valid JSON and fails decoding anyway).
_ESCAPED_NUL = b"\\u0000"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MESSAGE = "contains a NUL character (\\u0000), which text cannot hold"


def _shown(name: str) -> str:
    return name.replace(NUL, "\\u0000")


def nul_fields(value: Any, path: str = "") -> Iterator[str]:
    """The path of every string (or object key) in a decoded JSON value that holds a NUL,
    written as validation errors name fields: ``operations[0].data.title``."""
    if isinstance(value, str):
        if NUL in value:
            yield path or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            key_path = f"{path}.{_shown(str(key))}" if path else _shown(str(key))
            if isinstance(key, str) and NUL in key:
                yield key_path
            yield from nul_fields(item, key_path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_fields(item, f"{path}[{index}]")


def _error(field: str, source: str) -> dict[str, str]:
    return _error_for(field, MESSAGE, source)


async def refuse_nul_characters(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: 422 when a path, query or body string holds a NUL."""
    errors = [
        _error(_shown(name), "path")
        for name, value in request.path_params.items()
        if isinstance(value, str) and NUL in value
    ]
    errors += [
        _error(_shown(name), "query")
        for name, value in request.query_params.multi_items()
        if NUL in name or NUL in value
    ]
    if request.method in _BODY_METHODS:
        # Read once here and cached on the request: the handler decodes the same bytes.
        body = await request.body()
        if _ESCAPED_NUL in body:
            try:
                decoded = msgspec.json.decode(body)
            except msgspec.DecodeError:
                decoded = None  # the handler answers a body that does not parse
            errors += [_error(field, "body") for field in dict.fromkeys(nul_fields(decoded))]
    if errors:
        raise Invalid("Text cannot hold the NUL character (\\u0000); remove it", errors=errors)


def utc_field(value: datetime, field: str, source: str = "body") -> datetime:
    """``as_utc`` for a request field: a 422 naming ``field`` when the time is not usable."""
    try:
        return as_utc(value)
    except ValueError as exc:
        message = str(exc)
        errors = [_error_for(field, message, source)]
        raise Invalid(f"{field} is not a usable time: {message}", errors=errors) from None


def _error_for(field: str, message: str, source: str) -> dict[str, str]:
    return {"field": field, "message": message, "source": source}
