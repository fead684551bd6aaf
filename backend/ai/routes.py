"""HTTP routes of the model gateway: /v1 (OpenAI-compatible) and /ai/usage, /ai/budgets.

/v1 speaks OpenAI's wire format so the official clients work with ``base_url=<litebase>/v1``;
its errors are problem+json that also carry OpenAI's ``error`` object, so OpenAI clients read
them as their own (the status picks the exception class).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, Router, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.response import ServerSentEvent, ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession

from backend.ai.budgets import SubjectKind, subjects
from backend.ai.gateway import Gateway, StreamFailed
from backend.ai.schemas import BudgetLimits, BudgetView, UsageReport
from backend.ai.service import BudgetService
from backend.ai.usage import GroupBy, usage_report
from backend.auth.deps import BEARER
from backend.auth.guards import admin_only
from backend.config import Settings
from backend.errors import DomainError
from backend.identity import Principal
from backend.inputs import utc_field
from backend.paging import Page, Paging, page_of_list
from backend.problems import (
    Problem,
    field_problem,
    problem_from_domain_error,
    problem_from_http_exception,
)

_ERROR_TYPES: dict[int, str] = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_problem(
    request: Request[Any, Any, Any], exc: HTTPException | DomainError
) -> Response[Any]:
    """problem+json with OpenAI's ``error`` member beside the RFC 9457 fields."""
    if isinstance(exc, DomainError):
        problem = problem_from_domain_error(exc)
    elif isinstance(exc, ProblemDetailsException):
        problem = exc
    else:
        problem = problem_from_http_exception(exc)
    response = problem.to_response(request)
    body = response.content
    if isinstance(body, dict):
        status = response.status_code or 500
        errors = body.get("errors") or []
        default = "server_error" if status >= 500 else "invalid_request_error"
        if status == 413:
            body["detail"] = "The request body is larger than /v1 accepts (AI_MAX_BODY_BYTES)"
        body["error"] = {
            "message": body.get("detail") or body.get("title"),
            "type": _ERROR_TYPES.get(status, default),
            "param": errors[0].get("field") if errors and isinstance(errors[0], dict) else None,
            "code": body.get("code"),
        }
    return response


def _field_error(field: str, message: str) -> Problem:
    return field_problem(f"`{field}` {message}", field, message)


# OpenAI's own ceiling for n; max tokens far past any model's context still fits.
_COUNTS = {"max_tokens": 2**31 - 1, "max_completion_tokens": 2**31 - 1, "n": 128}


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value
    )


def _embeddable(value: Any) -> bool:
    """OpenAI's input shapes: text, texts, token ids, or lists of token ids."""
    if isinstance(value, str) or _is_tokens(value):
        return True
    return isinstance(value, list) and (
        all(isinstance(x, str) for x in value) or all(_is_tokens(x) and x for x in value)
    )


def _check_body(data: Any, required: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Problem(400, "The body must be a JSON object")
    if not isinstance(data.get("model"), str) or not data["model"]:
        raise _field_error("model", "is required: a model alias from GET /v1/models")
    if required == "messages" and (
        not isinstance(data.get("messages"), list) or not data["messages"]
    ):
        raise _field_error("messages", "must be a non-empty list of messages")
    if required == "input" and data.get("input") in (None, "", []):
        raise _field_error("input", "is required")
    if required == "input" and not _embeddable(data["input"]):
        raise _field_error("input", "must be a string, a list of strings, or token ids")
    if "stream" in data and not isinstance(data["stream"], bool):
        raise _field_error("stream", "must be true or false")
    # Budgets hold max tokens times n in Redis, whose counters are 64-bit: bound them first.
    for field, most in _COUNTS.items():
        value = data.get(field)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most
        ):
            raise _field_error(field, f"must be an integer from 1 to {most}")
    return data


def _event(data: dict[str, Any] | str) -> ServerSentEventMessage:
    """One event as OpenAI sends it: ``data: …`` and a blank line, lines ended by ``\\n``
    (Litestar's default, ``\\r\\n``, is valid SSE but not byte for byte what OpenAI sends)."""
    encoded = data if isinstance(data, str) else msgspec.json.encode(data)
    return ServerSentEventMessage(data=encoded, sep="\n")


def _gateway(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


@get("/models", summary="The model aliases you can call (OpenAI's model list)")
async def list_models(request: Request[Any, Any, Any], current: Principal) -> dict[str, Any]:
    return _gateway(request).models()


@get("/models/{model:str}", summary="One model alias (OpenAI's model object)")
async def retrieve_model(
    request: Request[Any, Any, Any], current: Principal, model: str
) -> dict[str, Any]:
    return _gateway(request).model(model)


@post(
    "/chat/completions",
    status_code=200,
    summary="A chat completion, as JSON or streamed as server-sent events (OpenAI's format)",
)
async def chat_completions(
    request: Request[Any, Any, Any], current: Principal, data: dict[str, Any]
) -> Response[Any]:
    # Annotated as a Response so each answer keeps its own media type (JSON or SSE).
    body = _check_body(data, "messages")
    gateway = _gateway(request)
    if not body.get("stream"):
        return Response(await gateway.complete(current, body))
    chunks = gateway.stream(current, body)
    # Budget, model and upstream problems surface here, before any byte is sent.
    first = await anext(chunks)

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield _event(first)
            async for chunk in chunks:
                yield _event(chunk)
            yield _event("[DONE]")
        except StreamFailed as exc:
            # OpenAI's clients raise on an event carrying `error`.
            yield _event(
                {"error": {"message": exc.detail, "type": "server_error", "code": "upstream_error"}}
            )
        finally:
            await chunks.aclose()

    return ServerSentEvent(events())  # with no-cache and X-Accel-Buffering: no


@post("/embeddings", status_code=200, summary="Embeddings (OpenAI's format)")
async def embeddings(
    request: Request[Any, Any, Any], current: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    return await _gateway(request).embed(current, _check_body(data, "input"))


async def provide_budget_service(
    db_session: AsyncSession, state: State, settings: Settings
) -> BudgetService:
    gateway: Gateway = state.gateway
    return BudgetService(db_session, gateway.budgets, settings, state.clock)


class UsageController(Controller):
    path = "/ai/usage"
    tags = ["model gateway"]
    security = BEARER

    @get("/", summary="Token usage in a time range, grouped (your own; admins see everyone's)")
    async def usage(
        self,
        current: Principal,
        db_session: AsyncSession,
        state: State,
        paging: Paging,
        start: Annotated[datetime | None, Parameter(query="from", required=False)] = None,
        end: Annotated[datetime | None, Parameter(query="to", required=False)] = None,
        group_by: GroupBy = "model",
    ) -> UsageReport:
        start = None if start is None else utc_field(start, "from", "query")
        end = None if end is None else utc_field(end, "to", "query")
        # By default up to now, this second included.
        end = end or state.clock.now().replace(microsecond=0) + timedelta(seconds=1)
        start = start or end - timedelta(days=30)
        if start >= end:
            raise Problem(
                422,
                "`from` must be before `to`",
                errors=[{"field": "from", "message": "must be before to", "source": "query"}],
            )
        page = await usage_report(db_session, current, start, end, group_by, paging)
        return UsageReport(
            items=page.items,
            next_cursor=page.next_cursor,
            start=start,
            end=end,
            group_by=group_by,
        )


class BudgetController(Controller):
    path = "/ai/budgets"
    tags = ["model gateway"]
    security = BEARER
    dependencies = {"budget_service": Provide(provide_budget_service)}

    @get("/", summary="Every budget override (admins)", guards=[admin_only])
    async def overrides(self, budget_service: BudgetService, paging: Paging) -> Page[BudgetView]:
        return await budget_service.overrides(paging)

    @get("/me", summary="The limits in effect for your key, user and org, and what is used")
    async def mine(
        self, current: Principal, budget_service: BudgetService, paging: Paging
    ) -> Page[BudgetView]:
        mine = page_of_list(subjects(current), paging)
        return Page(
            items=[await budget_service.get(kind, subject) for kind, subject in mine.items],
            next_cursor=mine.next_cursor,
        )

    @get(
        "/{kind:str}/{subject_id:uuid}",
        summary="A subject's limits in effect (admins)",
        guards=[admin_only],
    )
    async def get_budget(
        self, kind: SubjectKind, subject_id: UUID, budget_service: BudgetService
    ) -> BudgetView:
        return await budget_service.get(kind, subject_id)

    @put(
        "/{kind:str}/{subject_id:uuid}",
        summary="Override a key's, user's or org's limits",
        guards=[admin_only],
    )
    async def put_budget(
        self,
        kind: SubjectKind,
        subject_id: UUID,
        data: BudgetLimits,
        budget_service: BudgetService,
    ) -> BudgetView:
        return await budget_service.put(kind, subject_id, data)

    @delete(
        "/{kind:str}/{subject_id:uuid}",
        summary="Back to the defaults from settings",
        guards=[admin_only],
    )
    async def clear_budget(
        self, kind: SubjectKind, subject_id: UUID, budget_service: BudgetService
    ) -> None:
        await budget_service.clear(kind, subject_id)


def gateway_routers(settings: Settings) -> list[Router | type[Controller]]:
    v1 = Router(
        path="/v1",
        route_handlers=[list_models, retrieve_model, chat_completions, embeddings],
        tags=["model gateway"],
        security=BEARER,
        request_max_body_size=settings.ai_max_body_bytes,
        exception_handlers={
            ProblemDetailsException: openai_problem,
            HTTPException: openai_problem,
            DomainError: openai_problem,
        },
    )
    return [v1, UsageController, BudgetController]
