"""Every error leaves the API as RFC 9457 problem details, never as a stack trace.

Litestar's ProblemDetailsPlugin does the rendering; this module says how each exception
becomes a problem: HTTP errors keep their status, validation errors name the field at fault
in ``errors``, and anything unexpected is a 500 that points at the request id in the logs.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException

from backend import errors
from backend.lib.names import BLANK, NOT_BLANK

log = logging.getLogger(__name__)


class Problem(ProblemDetailsException):
    """A problem raised by Litebase code: ``Problem(404, "No such record")``."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        type_: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if errors is not None:
            extra["errors"] = errors
        super().__init__(
            detail=detail,
            status_code=status_code,
            type_=type_,
            title=HTTPStatus(status_code).phrase,
            headers=headers,
            extra=extra or None,
        )


# A route's ``opt`` names the problem statuses its logic answers with, beyond those its
# parameters, body and caller show (backend/openapi.py puts them in the OpenAPI document).
PROBLEMS_OPT = "problems"


def may_answer(*statuses: int) -> dict[str, tuple[int, ...]]:
    """``opt=may_answer(409)``: the route may answer 409 (a problem), as the document says."""
    return {PROBLEMS_OPT: statuses}


# A route that streams its body itself (no ``data`` parameter) names (its media type, whether
# it is required) here, so the document states the body it takes (backend/openapi.py).
RAW_BODY_OPT = "raw_body"


def field_problem(detail: str, field: str, message: str, source: str = "body") -> Problem:  # routes
    """A 422 naming the one field at fault: ``errors: [{field, message, source}]``."""
    return Problem(422, detail, errors=[{"field": field, "message": message, "source": source}])


# msgspec names a missing or unknown field in the message, and the whole body as the key.
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def locate(message: str, base: str = "") -> tuple[str, str]:
    """Split a msgspec validation message into (field path under ``base``, message)."""
    field = base
    path = _AT_PATH.search(message)
    if path:
        message = message[: path.start()]
        field = ".".join(p for p in (field, path.group(1)) if p)
    if message == f"Expected `str` matching regex {NOT_BLANK!r}":
        message = BLANK
    elif message.startswith("Expected `str` matching regex"):
        message = "is not in the expected format"
    named = _NAMED_FIELD.search(message)
    if named:
        field = ".".join(p for p in (field, named.group(1)) if p)
    return field, message


# Litestar's words for a required query, path, header or cookie parameter the request lacks.
_MISSING_PARAMETER = re.compile(r"^Missing required (query|path|header|cookie) parameter '([^']+)'")


def _field_errors(exc: ValidationException) -> list[dict[str, Any]]:
    missing = _MISSING_PARAMETER.match(str(exc.detail or ""))
    if missing:  # a 422 naming the parameter, as for a value of the wrong type
        return [{"field": missing.group(2), "message": "required", "source": missing.group(1)}]
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = str(item.get("key") or "body")
        field, message = locate(
            str(item.get("message", "invalid value")), "" if key == "data" else key
        )
        errors.append(
            {"field": field or "body", "message": message, "source": item.get("source", "body")}
        )
    return errors


def problem_from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    status = exc.status_code
    phrase = HTTPStatus(status).phrase
    detail = exc.detail if exc.detail and exc.detail != phrase else ""
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc)
        # A body that parses but has a field at fault is 422; one that does not parse stays 400.
        if errors and status == HTTPStatus.BAD_REQUEST:
            status = HTTPStatus.UNPROCESSABLE_ENTITY
        return Problem(status, detail or "The request is not valid", errors=errors)
    headers = dict(exc.headers or {})
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        detail = "The request body is larger than the server accepts (MAX_BODY_BYTES)"
    if status == HTTPStatus.TOO_MANY_REQUESTS and "Retry-After" not in headers:
        # Litestar's rate limiter says when the window resets; clients read Retry-After.
        headers["Retry-After"] = headers.get("RateLimit-Reset", "60")
        detail = detail or "Too many requests; slow down and retry after the given seconds"
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return Problem(status, detail or phrase, headers=headers or None, **extra)


def problem_from_unexpected(exc: Exception) -> ProblemDetailsException:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    log.exception("unhandled error", exc_info=exc)
    return Problem(
        500,
        "An unexpected error occurred; the server log has the details"
        + (f" under request id {request_id}" if request_id else ""),
        request_id=request_id,
    )


# The status each kind of domain error (backend/errors.py) answers with.
STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.Rejected: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Stale: 412,
    errors.TooLarge: 413,
    errors.Unsupported: 415,
    errors.Invalid: 422,
    errors.TooMany: 429,
    errors.Broken: 500,
    errors.UpstreamFailed: 502,
    errors.Unavailable: 503,
    errors.UpstreamTimeout: 504,
}


def status_of(error: errors.DomainError) -> int:
    """The HTTP status of a domain error: its kind's (the nearest base class that has one)."""
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 400


def problem_from_domain_error(exc: errors.DomainError) -> ProblemDetailsException:
    """The one place a refusal of Litebase's logic becomes problem+json."""
    return Problem(status_of(exc), exc.detail, errors=exc.errors, headers=exc.headers, **exc.extra)


def problem_details_config() -> ProblemDetailsConfig:
    return ProblemDetailsConfig(
        exception_to_problem_detail_map={
            HTTPException: problem_from_http_exception,
            errors.DomainError: problem_from_domain_error,
            Exception: problem_from_unexpected,
        }
    )


class ProblemBody(msgspec.Struct, frozen=True, kw_only=True):
    """The problem+json body, for the OpenAPI document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
