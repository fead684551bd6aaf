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

Then, on the assembled document (``app.openapi_schema``, before it is first served): request
bodies that refuse unknown fields say ``additionalProperties: false``; bounds of 0, which
Litestar leaves out, are stated; ``POST /auth/token`` gets a ``oneOf`` per grant_type; and each
route learns its query parameters' types (``check_input`` holds values to them).

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
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware.rate_limit import RateLimitMiddleware
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Encoding,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.response import Response
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.types import Method

from backend.auth.deps import ASKS_WHO_CALLS
from backend.auth.guards import admin_only
from backend.auth.schemas import GRANT_FIELDS, GRANT_ONE_OF, TokenRequest
from backend.collections.uploads import FILE_PARTS_OPT
from backend.inputs import QUERY_TYPES_OPT
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


def _http_routes(app: Litestar) -> Iterator[HTTPRoute]:
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
    for route in _http_routes(app):
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
    _refuse_unknown_fields(app)


def _request_structs(annotation: Any) -> Iterator[type[msgspec.Struct]]:
    """Every Struct a request body of type ``annotation`` may hold, nested ones included."""
    todo = [msgspec.inspect.type_info(annotation)]
    seen: set[int] = set()
    while todo:
        info = todo.pop()
        if id(info) in seen:
            continue
        seen.add(id(info))
        if isinstance(info, msgspec.inspect.StructType):
            yield info.cls
            todo += [field.type for field in info.fields]
        for name in ("item_type", "key_type", "value_type"):
            if isinstance(getattr(info, name, None), msgspec.inspect.Type):
                todo.append(getattr(info, name))
        if isinstance(info, msgspec.inspect.UnionType | msgspec.inspect.TupleType):
            todo += list(getattr(info, "types", ()) or getattr(info, "item_types", ()))
        if isinstance(info, msgspec.inspect.Metadata):
            todo.append(info.type)


def _refuse_unknown_fields(app: Litestar) -> None:
    """``additionalProperties: false`` on every request body object that refuses unknown
    fields (a Struct with ``forbid_unknown_fields``), as the server does: a client generated
    from the document then never sends one, and a fuzzer knows it is refused."""
    strict: dict[str, bool] = {}
    structs: dict[str, type[msgspec.Struct]] = {}
    for route in _http_routes(app):
        for handler, _ in route.route_handler_map.values():
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None or not handler.resolve_include_in_schema():
                continue
            for struct in _request_structs(data.annotation):
                forbids = bool(struct.__struct_config__.forbid_unknown_fields)
                name = struct.__name__
                strict[name] = strict.get(name, True) and forbids
                structs[name] = struct
    components = app.openapi_schema.components.schemas or {}
    for schema in components.values():
        if isinstance(schema, Schema) and schema.title and strict.get(schema.title):
            schema.additional_properties = False
        if isinstance(schema, Schema) and schema.title in structs:
            _state_zero_bounds(structs[schema.title], schema)
    token_request = components.get(TokenRequest.__name__)
    if isinstance(token_request, Schema):
        token_request.one_of = _grant_variants()
    _require_data_parts(app.openapi_schema, components)
    _hold_queries_to_their_types(app)


def _json_type(schema: Schema | Reference | None) -> str | None:
    """The type a query value must have ("integer", "date-time", ...), or None for text."""
    if not isinstance(schema, Schema):
        return None
    if schema.format == OpenAPIFormat.DATE_TIME:
        return "date-time"
    kinds = schema.type if isinstance(schema.type, list) else [schema.type]
    for kind in kinds:
        if kind in (OpenAPIType.INTEGER, OpenAPIType.NUMBER, OpenAPIType.BOOLEAN):
            return str(kind.value)
    for option in schema.one_of or ():
        found = _json_type(option)
        if found:
            return found
    return None


def _hold_queries_to_their_types(app: Litestar) -> None:
    """Tell each route the JSON types of its query parameters, as the document states them,
    so ``check_input`` (backend/inputs.py) refuses what the document refuses."""
    paths = app.openapi_schema.paths or {}
    for route in _http_routes(app):
        item = paths.get(route.path_format)
        if item is None:
            continue
        for method, (handler, _) in route.route_handler_map.items():
            operation = getattr(item, str(method).lower(), None)
            if not isinstance(operation, Operation):
                continue
            types = {
                parameter.name: kind
                for parameter in operation.parameters or ()
                if isinstance(parameter, Parameter)
                and parameter.param_in == ParamType.QUERY
                and (kind := _json_type(parameter.schema))
            }
            if types:
                handler.opt[QUERY_TYPES_OPT] = types


_BOUNDS = {"ge": "minimum", "gt": "exclusive_minimum", "le": "maximum", "lt": "exclusive_maximum"}


def _state_zero_bounds(struct: type[msgspec.Struct], schema: Schema) -> None:
    """Litestar leaves out a bound of 0 (``ge=0`` reads as no bound): state it."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        prop = (schema.properties or {}).get(field.encode_name)
        if not isinstance(prop, Schema):
            continue
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else ()
        for kind in (field.type, *kinds):
            for bound, key in _BOUNDS.items():
                if getattr(kind, bound, None) == 0 and getattr(prop, key) is None:
                    setattr(prop, key, 0)


def _grant_variants() -> list[Schema | Reference]:
    """POST /auth/token's body, one variant per grant_type with the fields it needs (not
    null), and mfa's one at least of a second factor (backend/auth/schemas.py)."""
    present = Schema(schema_not=Schema(type=OpenAPIType.NULL))
    variants: list[Schema | Reference] = []
    for grant, fields in GRANT_FIELDS.items():
        second = GRANT_ONE_OF.get(grant, ())
        variants.append(
            Schema(
                properties={"grant_type": Schema(const=grant), **dict.fromkeys(fields, present)},
                required=["grant_type", *fields],
                any_of=[Schema(properties={field: present}, required=[field]) for field in second]
                or None,
            )
        )
    return variants


def _require_data_parts(document: OpenAPI, components: dict[str, Schema]) -> None:
    """A multipart create must carry the ``data`` part when the record has required fields
    (the JSON body's own required fields cannot come as nothing)."""
    for path in (document.paths or {}).values():
        for operation in (path.post, path.patch):
            body = operation.request_body if operation else None
            if not isinstance(body, RequestBody):
                continue
            multipart = body.content.get("multipart/form-data")
            parts = multipart.schema if multipart else None
            if not isinstance(parts, Schema) or not parts.properties:
                continue
            data = parts.properties.get("data")
            if isinstance(data, Reference):
                data = components.get(data.ref.rsplit("/", 1)[-1])
            record = data
            if isinstance(record, Schema) and record.required:
                parts.required = ["data"]


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
