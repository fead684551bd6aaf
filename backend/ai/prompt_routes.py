"""HTTP routes: GET /ai/prompts, POST /ai/prompts/{name}/run, POST /collections/{c}/ask.

Streams are server-sent events: ``delta`` (``{"content": "..."}``, text as the model writes
it), then one ``done`` (the same body a JSON answer has), or ``error`` (a problem body) if the
call fails after it started. A failure before the first token is an ordinary problem response.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.background_tasks import BackgroundTask
from litestar.channels import ChannelsPlugin
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.response import ServerSentEvent, ServerSentEventMessage

from backend.ai.ask_channels import BackgroundSlots, answer_over_channel, realtime_target
from backend.ai.prompts import PromptLibrary
from backend.ai.rag import Answer, AskService, Citation
from backend.ai.runner import Delta, PromptRunner, RunResult
from backend.auth.deps import BEARER
from backend.collections.rules import CompiledRules
from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.errors import DomainError
from backend.identity import Principal
from backend.inputs import bounded_by_settings
from backend.lib.names import NOT_BLANK
from backend.paging import Page, Paging, page_of_list
from backend.problems import Problem, may_answer, problem_from_domain_error
from backend.vectors.service import search_service_for

log = logging.getLogger(__name__)


class PromptView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    description: str
    model: str
    input_schema: dict[str, Any]


class RunRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    variables: dict[str, Any] = {}
    stream: bool = False


class AskRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(pattern=NOT_BLANK)]
    k: Annotated[int, bounded_by_settings(1, "ask_max_k", "vector_search_max_k")] = 5
    stream: bool = False
    channel: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=r"^(user|room):",
                description="`user:<your id>` or `room:<name>` (of your active org)",
            ),
        ]
        | None
    ) = None
    mode: Literal["vector", "text", "hybrid"] = "hybrid"
    filter: str | None = None
    min_score: float | None = None


class AskAccepted(msgspec.Struct, frozen=True, kw_only=True):
    ask_id: str
    channel: str


def _problem_body(exc: ProblemDetailsException) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": exc.type_ or "about:blank",
        "title": exc.title,
        "status": exc.status_code,
        "detail": exc.detail,
    }
    if isinstance(exc.extra, dict):
        body.update(exc.extra)
    return body


def server_sent(events: AsyncGenerator[Delta | RunResult | Answer, None]) -> ServerSentEvent:
    """``delta`` events, then ``done``; ``error`` with a problem body if the call breaks."""

    async def messages() -> AsyncGenerator[ServerSentEventMessage, None]:
        try:
            async for event in events:
                name = "delta" if isinstance(event, Delta) else "done"
                yield ServerSentEventMessage(event=name, data=msgspec.json.encode(event).decode())
        except (Problem, DomainError) as exc:
            problem = problem_from_domain_error(exc) if isinstance(exc, DomainError) else exc
            yield ServerSentEventMessage(
                event="error", data=msgspec.json.encode(_problem_body(problem)).decode()
            )
        except Exception:
            log.exception("a stream failed")
            failed = Problem(500, "The answer broke off; the server log has the details")
            yield ServerSentEventMessage(
                event="error", data=msgspec.json.encode(_problem_body(failed)).decode()
            )
        finally:
            await events.aclose()  # a client that went away closes the upstream request

    return ServerSentEvent(messages())  # with no-cache and X-Accel-Buffering: no


def _runner(request: Request[Any, Any, Any], prompts: PromptLibrary) -> PromptRunner:
    return PromptRunner(request.app.state.gateway, prompts)


def _prompts_router(prompts: PromptLibrary) -> Router:
    @get(
        "/",
        operation_id="list_prompts",
        summary="The prompt templates, with the variables each takes (a JSON Schema)",
        security=BEARER,
    )
    async def list_prompts(current: Principal, paging: Paging) -> Page[PromptView]:
        page = page_of_list(list(prompts), paging)
        return page.map(lambda p: msgspec.convert(p, PromptView, from_attributes=True))

    @post(
        "/{name:str}/run",
        operation_id="run_prompt",
        summary="Render a prompt with these variables and run it through the gateway",
        description="With `stream: true`, server-sent events: `delta`, then `done` (this body).",
        status_code=200,
        security=BEARER,
        responses={200: ResponseSpec(RunResult, description="The prompt's answer")},
    )
    async def run_prompt(
        request: Request[Any, Any, Any], name: str, data: RunRequest, current: Principal
    ) -> Response[Any]:
        # Annotated as a Response so each answer keeps its own media type (JSON or SSE).
        prompt = prompts.require(name)
        runner = _runner(request, prompts)
        if data.stream:
            return server_sent(await runner.stream(current, prompt, data.variables))
        return Response(await runner.run(current, prompt, data.variables))

    return Router("/ai/prompts", route_handlers=[list_prompts, run_prompt], tags=["ai"])


def _ask_router(collection: Collection, settings: Settings, slots: BackgroundSlots) -> Router:
    name = collection.name

    @post(
        "/ask",
        operation_id=f"ask_{name}",
        summary=f"Answer a question from the {name} you may read, citing them",
        description="With `stream: true`, server-sent events: `delta`, then `done` (this body). "
        "With `channel`, 202 and the answer over that realtime channel (docs/ai.md).",
        status_code=200,
        security=BEARER,
        opt=may_answer(404),  # the configured chat model is not in the catalog
        responses={
            200: ResponseSpec(Answer, description="The answer and its citations"),
            202: ResponseSpec(AskAccepted, description="The answer follows over `channel`"),
        },
    )
    async def ask(
        request: Request[Any, Any, Any],
        data: AskRequest,
        ask_service: AskService,
        current: Principal,
    ) -> Response[Any]:  # JSON, SSE or 202, each with its own media type
        target = (
            realtime_target(data.channel, current, settings) if data.channel is not None else None
        )
        citations: list[Citation] = await ask_service.retrieve(
            collection,
            current,
            question=data.question,
            k=data.k,
            mode=data.mode,
            filter_=data.filter,
            min_score=data.min_score,
        )
        if target is not None:
            assert data.channel is not None
            slots.take()
            try:
                events = await ask_service.stream(current, data.question, citations)
            except BaseException:
                slots.give_back()
                raise
            ask_id = uuid.uuid4().hex
            channels = request.app.plugins.get(ChannelsPlugin)

            async def relay() -> None:
                try:
                    await answer_over_channel(channels, target, ask_id, events)
                finally:
                    slots.give_back()

            return Response(
                AskAccepted(ask_id=ask_id, channel=data.channel),
                status_code=202,
                background=BackgroundTask(relay),
            )
        if data.stream:
            return server_sent(await ask_service.stream(current, data.question, citations))
        return Response(await ask_service.answer(current, data.question, citations))

    return Router(f"/collections/{name}", route_handlers=[ask], tags=[f"collection: {name}"])


def prompt_routers(
    registry: CollectionRegistry,
    rules: dict[str, CompiledRules],
    settings: Settings,
    prompts: PromptLibrary,
) -> list[Router]:
    """/ai/prompts, and /collections/{c}/ask for each collection that embeds."""
    routers = [_prompts_router(prompts)]
    embedded = [c for c in registry if c.embed is not None]
    if not embedded:
        return routers

    def provide_ask(request: Request[Any, Any, Any], state: State) -> AskService:
        search = search_service_for(state, settings, rules)
        return AskService(search, _runner(request, prompts), settings)

    slots = BackgroundSlots(settings.ask_max_background)
    routers.append(
        Router(
            "/",
            route_handlers=[_ask_router(c, settings, slots) for c in embedded],
            dependencies={"ask_service": Provide(provide_ask, sync_to_thread=False)},
        )
    )
    return routers
