"""The assembled OpenAPI document, finished when it is first needed.

What ``document_answers`` (backend/openapi.py) cannot say per route is said on the document
Litestar builds: request bodies that refuse unknown fields say ``additionalProperties: false``;
bounds of 0, which Litestar leaves out, are stated; ``POST /auth/token`` gets a ``oneOf`` per
grant_type; a multipart create requires its ``data`` part when the record has required fields;
and each route learns its query parameters' types, which ``check_input`` holds values to.

Building the document costs about 0.2 s, which every app paid at start-up (and the suite builds
an app per test), though most apps never serve it. So it is finished on the first request that
needs it: one that carries a query (``check_input`` holds it to the types the document gives,
through ``FINISH_DOCUMENT`` in the app's state) or asks for the document itself (the routes of
``document_router``).
Anything else that reads the document in process asks ``finished_document(app)``, never
``app.openapi_schema``, which would be Litestar's unfinished one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Router
from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIFormat,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)

from backend.auth.schemas import GRANT_FIELDS, GRANT_ONE_OF, TokenRequest
from backend.config import Settings
from backend.inputs import QUERY_TYPES_OPT, SETTING_BOUNDS, check_input
from backend.openapi import http_routes

# Set in the app's state once its document is finished.
_FINISHED = "openapi_document_finished"


def finished_document(app: Litestar) -> OpenAPI:
    """``app``'s OpenAPI document, as served: built and finished once."""
    document = app.openapi_schema
    if not app.state.get(_FINISHED):
        _refuse_unknown_fields(app, document)
        _hold_queries_to_their_types(app, document)
        app.state[_FINISHED] = True
    return document


def document_router(path: str) -> Router:
    """The router Litestar serves the document from (``OpenAPIConfig.openapi_router``): it
    finishes the document before any of its routes runs."""

    async def finish_first(request: Request[Any, Any, Any]) -> None:
        finished_document(request.app)
        await check_input(request)

    return Router(path, route_handlers=[], include_in_schema=False, before_request=finish_first)


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


def _refuse_unknown_fields(app: Litestar, document: OpenAPI) -> None:
    """``additionalProperties: false`` on every request body object that refuses unknown
    fields (a Struct with ``forbid_unknown_fields``), as the server does: a client generated
    from the document then never sends one, and a fuzzer knows it is refused."""
    strict: dict[str, bool] = {}
    structs: dict[str, type[msgspec.Struct]] = {}
    for route in http_routes(app):
        for handler, _ in route.route_handler_map.values():
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None or not handler.resolve_include_in_schema():
                continue
            for struct in _request_structs(data.annotation):
                forbids = bool(struct.__struct_config__.forbid_unknown_fields)
                name = struct.__name__
                strict[name] = strict.get(name, True) and forbids
                structs[name] = struct
    components = document.components.schemas or {}
    for schema in components.values():
        if isinstance(schema, Schema) and schema.title and strict.get(schema.title):
            schema.additional_properties = False
        if isinstance(schema, Schema) and schema.title in structs:
            _state_bounds(structs[schema.title], schema, app.state.settings)
    token_request = components.get(TokenRequest.__name__)
    if isinstance(token_request, Schema):
        token_request.one_of = _grant_variants()
    _require_data_parts(document, components)


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


def _hold_queries_to_their_types(app: Litestar, document: OpenAPI) -> None:
    """Tell each route the JSON types of its query parameters, as the document states them,
    so ``check_input`` (backend/inputs.py) refuses what the document refuses."""
    paths = document.paths or {}
    for route in http_routes(app):
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


def _state_bounds(struct: type[msgspec.Struct], schema: Schema, settings: Settings) -> None:
    """Bounds the server holds a body's fields to that Litestar leaves out of the document: a
    bound of 0 (``ge=0`` reads as no bound), and a bound that is a setting
    (``bounded_by_settings``, backend/inputs.py), as this app's settings have it."""
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
        extra = field.type.extra if isinstance(field.type, msgspec.inspect.Metadata) else None
        if extra and SETTING_BOUNDS in extra:
            minimum, maxima = extra[SETTING_BOUNDS]
            prop.minimum = minimum
            prop.maximum = min(getattr(settings, name) for name in maxima)


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
