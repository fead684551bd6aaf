"""The OpenAPI document tells the whole truth: each operation's problem answers, its security
and its operationId, worked out from what each route really depends on (docs/api.md).

Litestar documents a route's success answer and its own 400 (in a shape we never send).
``document_answers`` walks the assembled app once and, per route, declares the problem+json
answers it can give, each with the one shared ``Problem`` schema:

- a body: 400 (it does not parse), 413 (larger than MAX_BODY_BYTES), 422 (a field at fault);
- query, path or header parameters: 422;
- a path parameter: 404 (no such thing, or none the caller may see);
- who is calling (the ``principal`` dependency, or a guard): 401 (a token that does not hold),
  403 (an API key's scopes, or not an admin behind ``admin_only``), 429 (the caller's rate);
- a per-IP rate limit (Litestar's rate-limit middleware on the route or its router): 429;
- anything else the route's logic refuses with, named in its ``opt["problems"]`` (409, 412,
  a 403 of its own, 502, ...), on the handler or on its controller or router
  (``opt=may_answer(409)``, backend/problems.py).

What can only be said on the assembled document is said there, when it is first needed
(backend/openapi_document.py).

Security follows the same dependencies: a route that needs a caller (``current``, or a guard)
requires a bearer token; one that only asks who is calling (``principal``) takes one optionally
(``[{}, {bearer: []}]``); one that never asks declares none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.middleware.rate_limit import RateLimitMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Encoding,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.response import Response
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.types import Method

from backend.auth.deps import ASKS_WHO_CALLS
from backend.auth.guards import admin_only
from backend.collections.uploads import FILE_PARTS_OPT
from backend.problems import PROBLEMS_OPT, RAW_BODY_OPT

PROBLEM_JSON = "application/problem+json"
# Who is calling: the dependencies that authenticate (backend/auth/deps.py).
_ASKS_WHO = "principal"
_NEEDS_CALLER = "current"
REQUIRED: list[dict[str, list[str]]] = [{"bearer": []}]
OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]


class FieldError(msgspec.Struct, frozen=True, kw_only=True):
    """One field at fault: where (``body``, ``query``, ``path``, ``header``) and why."""

    field: str
    message: str
    source: str | None = None


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details: every refusal and error Litebase answers with. Some carry more
    members (``code``, ``request_id``, the current record of a conflict)."""

    type: str = "about:blank"
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    detail: str
    errors: list[FieldError] | None = None
    code: str | None = None


def _problem(status: int) -> ResponseSpec:
    return ResponseSpec(
        Problem,
        description=HTTPStatus(status).phrase,
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )


@dataclass
class ProblemOperation(Operation):
    """An operation without Litestar's own 400 answer, which is not the shape we send: where
    a route can answer 400, ``document_answers`` declares it as a problem."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("400")
        if isinstance(answer, OpenAPIResponse) and PROBLEM_JSON not in (answer.content or {}):
            assert self.responses is not None
            del self.responses["400"]


def _operation_class(
    security: list[dict[str, list[str]]] | None,
    file_parts: list[str] | None,
    raw_body: tuple[str, bool] | None = None,
) -> type[ProblemOperation]:
    """The operation of one route: its own security (Litestar would add its layers'
    requirements together); for a route that takes files, its multipart body; for one that
    streams its body itself, that body's media type. One class per distinct answer, made
    once per process: making a dataclass costs about a millisecond, and every app (a test
    builds one each) asks for over a hundred."""
    frozen_security = (
        None
        if security is None
        else tuple(tuple((name, tuple(scopes)) for name, scopes in s.items()) for s in security)
    )
    return _operation_class_of(frozen_security, tuple(file_parts) if file_parts else None, raw_body)


@functools.cache
def _operation_class_of(
    security: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...] | None,
    file_parts: tuple[str, ...] | None,
    raw_body: tuple[str, bool] | None,
) -> type[ProblemOperation]:
    @dataclass
    class RouteOperation(ProblemOperation):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.security = (
                None
                if security is None
                else [{name: list(scopes) for name, scopes in s} for s in security]
            )
            if file_parts:
                _add_file_parts(self, list(file_parts))
            if raw_body:
                media_type, required = raw_body
                self.request_body = RequestBody(
                    content={
                        media_type: OpenAPIMediaType(
                            schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                        )
                    },
                    required=required,
                )

    return RouteOperation


def _add_file_parts(operation: Operation, names: list[str]) -> None:
    """A JSON body that may also come as multipart/form-data: the same object as a ``data``
    part (JSON), and each file field as repeated file parts (docs/files.md); no other part."""
    body = operation.request_body
    if not isinstance(body, RequestBody) or "application/json" not in body.content:
        return
    record = body.content["application/json"].schema
    if record is None:
        return
    files = Schema(
        type=OpenAPIType.ARRAY,
        items=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
        description="Files for this file field: one part each, with a filename",
    )
    body.content["multipart/form-data"] = OpenAPIMediaType(
        schema=Schema(
            type=OpenAPIType.OBJECT,
            properties={
                "data": record,
                **{name: files for name in names},
            },
            additional_properties=False,
        ),
        encoding={"data": Encoding(content_type="application/json")},
    )


def http_routes(app: Litestar) -> Iterator[HTTPRoute]:
    return (route for route in app.routes if isinstance(route, HTTPRoute))


def _depends_on(handler: HTTPRouteHandler) -> set[str]:
    """The names a handler asks for: its parameters and, through them, its dependencies'."""
    available = handler.resolve_dependencies()
    seen: set[str] = set()
    todo = list(handler.parsed_fn_signature.parameters)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        provider = available.get(name)
        if provider is not None:
            todo += list(provider.parsed_fn_signature.parameters)
            if getattr(provider.dependency, ASKS_WHO_CALLS, False):
                todo.append(_ASKS_WHO)
    return seen


def _parameters(handler: HTTPRouteHandler, names: Iterable[str]) -> set[str]:
    """Which of ``names`` are request parameters (query, path, header), not dependencies."""
    dependencies = handler.resolve_dependencies()
    reserved = {"data", "request", "state", "scope", "headers", "cookies", "query", "socket"}
    return {n for n in names if n not in dependencies and n not in reserved}


def answers_of(handler: HTTPRouteHandler, *, has_path_parameters: bool) -> set[int]:
    """The problem statuses ``handler`` can answer with (see the module's docstring)."""
    asks = _depends_on(handler)
    statuses: set[int] = set()
    if "data" in asks:
        statuses |= {400, 413, 422}
    parameters = _parameters(handler, asks)
    if parameters:
        statuses.add(422)
    if has_path_parameters:
        statuses.add(404)
    if _ASKS_WHO in asks or _NEEDS_CALLER in asks or admin_only in handler.resolve_guards():
        statuses |= {401, 403, 429}
    if _rate_limited(handler):
        statuses.add(429)
    statuses |= set(handler.opt.get(PROBLEMS_OPT, ()))
    return statuses


def _rate_limited(handler: HTTPRouteHandler) -> bool:
    """Behind a per-IP limit of its own (Litestar's rate limiter, on it or on its router)."""
    return any(
        getattr(layer, "middleware", None) is RateLimitMiddleware
        for layer in handler.resolve_middleware()
    )


def security_of(handler: HTTPRouteHandler) -> list[dict[str, list[str]]] | None:
    asks = _depends_on(handler)
    if _NEEDS_CALLER in asks or admin_only in handler.resolve_guards():
        return REQUIRED
    if _ASKS_WHO in asks:
        return OPTIONAL
    return None


def operation_id_of(
    handler: HTTPRouteHandler, method: Method | str, path_components: list[Any]
) -> str:
    """``{method}_{path words}``: ``GET /auth/sessions`` is ``get_auth_sessions``; a path
    parameter reads ``by_<name>``. Unique and stable: one route, one method, one id."""
    words = [str(getattr(method, "value", method)).lower()]
    for component in path_components:
        name = getattr(component, "name", None)
        words.append(f"by_{name}" if name else str(component))
    return re.sub(r"[^a-z0-9]+", "_", "_".join(words).lower()).strip("_")


def document_answers(app: Litestar) -> None:
    """Declare, on each documented route of ``app``, its problem answers and its security;
    and give each route's OPTIONS answer its own ``Allow``."""
    for route in http_routes(app):
        _answer_options_truthfully(route)
        has_path_parameters = bool(route.path_parameters)
        for handler, _ in route.route_handler_map.values():
            if not handler.resolve_include_in_schema():
                continue
            declared = dict(handler.responses or {})
            for status in sorted(answers_of(handler, has_path_parameters=has_path_parameters)):
                declared.setdefault(status, _problem(status))
            handler.responses = declared
            handler.operation_class = _operation_class(
                security_of(handler), handler.opt.get(FILE_PARTS_OPT), handler.opt.get(RAW_BODY_OPT)
            )


def _answer_options_truthfully(route: HTTPRoute) -> None:
    """Litestar's own OPTIONS handler lists the methods of the first route built for a path;
    a path whose methods come from several routers (a record's GET, PATCH and DELETE) got a
    short ``Allow``. Answer with the route's whole list."""
    handler, _ = route.route_handler_map.get("OPTIONS", (None, None))
    if handler is None or handler.handler_name != "options_handler":
        return
    allow = ", ".join(sorted(route.methods))

    def options_handler(scope: Any) -> Response[None]:
        return Response(
            content=None,
            status_code=HTTP_204_NO_CONTENT,
            headers={"Allow": allow},
            media_type="text/plain",
        )

    options_handler.__annotations__ = handler.fn.__annotations__
    # Litestar calls it as the sync function it replaces (its signature is already parsed).
    setattr(handler, "_fn", options_handler)  # noqa: B010
