"""Structured logs for the API and workers, each line carrying the request id.

One path: our modules log through stdlib ``logging`` (``logging.getLogger(__name__)``, fields
as ``extra={...}``), as most of them and every library we run (uvicorn, Celery, SQLAlchemy)
already did; structlog is only the formatter (``ProcessorFormatter``), JSON or console.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import EventDict

from backend.config import Settings
from backend.problems import problem_from_unexpected

REQUEST_ID_HEADER = "x-request-id"

access_log = logging.getLogger("litebase.access")
_HEADER = REQUEST_ID_HEADER.encode()
# Loggers whose ``extra`` fields become keys of the line; other libraries' extras (uvicorn's
# coloured copy of a message, Celery's task context) stay out of it.
_OUR_LOGGERS = frozenset({"backend", "workers", "litebase"})
_add_extra_fields = structlog.stdlib.ExtraAdder()


def _add_our_fields(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if record is not None and record.name.partition(".")[0] in _OUR_LOGGERS:
        return _add_extra_fields(logger, method_name, event_dict)
    return event_dict


def configure_logging(settings: Settings) -> None:
    """Render every stdlib record (ours, uvicorn's, Celery's, SQLAlchemy's) with structlog,
    adding the context bound for the request (its id)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_our_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn's own access log would duplicate ours, which carries the request id.
    logging.getLogger("uvicorn.access").disabled = True


class RequestIdMiddleware(ASGIMiddleware):
    """Give each request an id (or keep a sane one from the client), echo it, log the request."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        incoming = next((v for k, v in scope["headers"] if k == _HEADER), b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else ""
        request_id = request_id or uuid.uuid4().hex
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        # Not bound_contextvars (a generator context manager): this runs on every request.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await next_app(scope, receive, send_with_id)
        except HTTPException as exc:
            # Raised by a route's middleware (the rate limiter's 429), it is answered by the
            # app's outer handler, past send_with_id: log the status it will send, and give
            # the exception the id so the problem it becomes carries the header too.
            status = exc.status_code
            exc.headers = {**(exc.headers or {}), REQUEST_ID_HEADER: request_id}
            raise
        except Exception as exc:
            # Any other error from a route's middleware (the rate limiter's store unreachable,
            # say) is answered past send_with_id too: it becomes the 500 problem a route's own
            # error does, logged here while the request id is still bound, carrying the id.
            status = 500
            problem = problem_from_unexpected(exc)
            problem.headers = {**(problem.headers or {}), REQUEST_ID_HEADER: request_id}
            raise problem from exc
        finally:
            if access_log.isEnabledFor(logging.INFO):
                fields = {
                    "method": scope.get("method"),
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                }
                access_log.info("request", extra=fields)
            structlog.contextvars.reset_contextvars(**tokens)
