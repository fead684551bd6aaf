"""Checks on decoded request input that hold for every route.

Postgres ``text`` and ``jsonb`` cannot hold the NUL character (``\\u0000``): a string carrying
one, anywhere it is stored or compared in SQL, fails in the driver as a 500. So one hook refuses
NUL in path parameters, query parameters and JSON bodies with a 422 naming each field at fault,
instead of a check per route that a new route would forget.

The same hook holds JSON bodies to JSON's own types, as the OpenAPI document states them:
Litestar converts a body to the route's type leniently (``0`` becomes ``false``, ``"12"`` an
int), so ``check_input`` decodes it strictly once more and refuses what the document refuses.
Query values are held to the types the document gives them (``QUERY_TYPES_OPT``, written by
backend/openapi.py): an integer is digits (``?to=0.5`` is refused), a time is a date-time, not
a number of seconds.

A time must name its offset and fall within years 1 to 9999 once moved to UTC (Python and the
driver both convert to UTC): ``utc_field`` says so instead of an OverflowError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, get_args, get_origin
from weakref import WeakKeyDictionary

import msgspec
from litestar import Litestar, Request
from litestar.handlers import HTTPRouteHandler

from backend.errors import Invalid
from backend.lib.clock import as_utc
from backend.problems import locate

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


# A route's ``opt`` key: {query parameter: its JSON type ("integer", "number", "boolean",
# "date-time")}, from the OpenAPI document (backend/openapi.py).
QUERY_TYPES_OPT = "query_types"
# In the app's state: what finishes its OpenAPI document, which writes QUERY_TYPES_OPT
# (backend/openapi_document.py's ``finished_document``).
FINISH_DOCUMENT = "finish_openapi_document"
# A body field whose bounds are settings (k of search and ask): the logic refuses what is out
# of them, and the OpenAPI document states them as this app's settings have them
# (backend/openapi_document.py), so a client generated from it never sends such a value.
SETTING_BOUNDS = "bounds_from_settings"


def bounded_by_settings(minimum: int, *maxima: str) -> msgspec.Meta:
    """``Annotated[int, bounded_by_settings(1, "ask_max_k")]``: at least ``minimum``, at most
    the smallest of the settings named."""
    return msgspec.Meta(extra={SETTING_BOUNDS: (minimum, maxima)})


_QUERY_FORMS = {
    "integer": re.compile(r"-?[0-9]+"),
    "number": re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
    "boolean": re.compile(r"true|false"),
    # RFC 3339 (a date alone too, as msgspec reads it): never a bare number of seconds.
    "date-time": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ].*)?"),
}
_JSON_TYPES = frozenset({"application/json"})
# Per route handler: its body's type, when msgspec reads it (None: not checked here).
_body_types: WeakKeyDictionary[HTTPRouteHandler, Any] = WeakKeyDictionary()


def _body_type(handler: HTTPRouteHandler) -> Any:
    if handler in _body_types:
        return _body_types[handler]
    data = handler.parsed_fn_signature.parameters.get("data")
    kind = None
    if data is not None:
        kind = data.annotation
        if get_origin(kind) is not None and hasattr(kind, "__metadata__"):
            kind = get_args(kind)[0]
        try:
            msgspec.json.Decoder(kind)
        except TypeError:  # not a type msgspec reads (a form, a file): Litestar's own
            kind = None
    _body_types[handler] = kind
    return kind


def _whole_floats_as_ints(value: Any) -> Any:
    """JSON has one kind of number: ``3.0`` is an integer to JSON Schema, as ``3`` is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(item) for item in value]
    return value


def _query_errors(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    if not request.scope.get("query_string"):
        return []
    finish: Callable[[Litestar], object] | None = request.app.state.get(FINISH_DOCUMENT)
    if finish is not None:
        finish(request.app)  # the types come from the document, finished when first needed
    types: dict[str, str] = request.route_handler.opt.get(QUERY_TYPES_OPT) or {}
    errors = []
    for name, value in request.query_params.multi_items():
        form = _QUERY_FORMS.get(types.get(name, ""))
        if form is not None and not form.fullmatch(value):
            errors.append(_error_for(name, f"is not {_A[types[name]]}", "query"))
    return errors


_A = {"integer": "an integer", "number": "a number", "boolean": "true or false"}
_A["date-time"] = "a date-time (RFC 3339)"


def _body_errors(request: Request[Any, Any, Any], body: bytes) -> list[dict[str, str]]:
    if not body or request.content_type[0] not in _JSON_TYPES:
        return []
    kind = _body_type(request.route_handler)
    if kind is None:
        return []
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []  # not JSON: Litestar answers 400
    try:
        msgspec.convert(_whole_floats_as_ints(decoded), kind)
    except msgspec.ValidationError as exc:
        if _LITESTAR_REFUSES.search(str(exc)):
            # Litestar refuses a missing or unknown field itself, after the route's caller is
            # known: a body sent without credentials is a 401, as before this check.
            return []
        field, message = locate(str(exc))
        return [_error_for(field or "body", message, "body")]
    return []


# What Litestar's own (lenient) parsing refuses as well; only what it would let through by
# converting (a value of another JSON type) is this check's to refuse.
_LITESTAR_REFUSES = re.compile(r"missing required field|contains unknown field")


async def check_input(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: 422 when a path, query or body string holds a NUL, a query
    value is not of its declared type, or a JSON body's values are not of JSON's own types."""
    await refuse_nul_characters(request)
    errors = _query_errors(request)
    if request.method in _BODY_METHODS:
        errors += _body_errors(request, await request.body())
    if errors:
        method, path = request.method, request.url.path
        raise Invalid(f"Validation failed for {method} {path}", errors=errors)


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
