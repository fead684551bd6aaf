"""Running prompts through the gateway, and asking a collection (retrieve, then rag_answer).

A prompt run renders the prompt's messages from the caller's variables and makes the chat call
through the gateway as the caller, naming the prompt so usage records it. Asking searches the
collection under the caller's list rule, so no chunk of a record they may not list can reach
the prompt, numbers the chunks, renders ``ASK_PROMPT`` with them and answers with the chunks as
citations. Both answer at once or as a stream of text deltas ending in the full answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar.channels import ChannelsPlugin

from backend.ai.gateway import Gateway, PromptUse
from backend.ai.prompts import Prompt, PromptLibrary, parse_json_output
from backend.collections.spec import Collection
from backend.config import Settings
from backend.errors import DomainError, Forbidden, Invalid, TooMany, Unavailable, invalid_field
from backend.identity import Principal
from backend.problems import status_of
from backend.realtime.protocol import encode
from backend.realtime.rooms import room_channel, user_channel
from backend.vectors.service import SearchService

log = logging.getLogger(__name__)

SearchMode = Literal["vector", "text", "hybrid"]
_CITED = re.compile(r"\[(\d{1,3})\]")


class PromptRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    """A prompt's answer: the text, why it stopped, the tokens it took (and, for prompts whose
    parameters ask for JSON, the text parsed: null when the model did not answer JSON)."""

    prompt: PromptRef
    model: str
    output: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    data: Any = msgspec.UNSET


class ChunkRef(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    content: str


class Citation(msgspec.Struct, frozen=True, kw_only=True):
    """A retrieved chunk, numbered as the prompt showed it: ``[n]`` in the answer cites it."""

    n: int
    record_id: str
    chunk: ChunkRef
    score: float
    cited: bool = False
    # The document the chunk is from (Embed(files=...)) and its page (PDFs, from 1); left out
    # for a chunk of the record's text fields.
    file: str | msgspec.UnsetType = msgspec.UNSET
    page: Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    answer: str
    citations: list[Citation]


class Delta(msgspec.Struct, frozen=True, kw_only=True):
    """Text the model has just produced (one SSE ``delta`` event, or ``ask.delta``)."""

    content: str


def _text_of(completion: Mapping[str, Any]) -> tuple[str, str | None]:
    choices = completion.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return message.get("content") or "", choices[0].get("finish_reason")


@dataclass
class _Collected:
    """What a stream has said so far (the first choice's text, its finish reason, usage)."""

    model: str
    parts: list[str]
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def take(self, chunk: Mapping[str, Any]) -> str:
        """Record one chunk; the text it adds."""
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
        self.model = chunk.get("model") or self.model
        text = ""
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            text = (choice.get("delta") or {}).get("content") or ""
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        if text:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)


async def _started(chunks: AsyncIterator[dict[str, Any]]) -> AsyncGenerator[dict[str, Any], None]:
    """``chunks`` with its first chunk already fetched, so that what the gateway refuses before
    any output (budget, unknown model, every upstream failing) is raised here, as a problem the
    route answers instead of a stream."""
    iterator = aiter(chunks)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(iterator)
        raise

    async def replay() -> AsyncGenerator[dict[str, Any], None]:
        try:
            if first is not None:
                yield first
                async for chunk in iterator:
                    yield chunk
        finally:
            await _close(iterator)

    return replay()


async def _close(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


class PromptRunner:
    """Runs prompts through the gateway as the caller."""

    def __init__(self, gateway: Gateway, prompts: PromptLibrary) -> None:
        self.gateway = gateway
        self.prompts = prompts

    async def run(
        self, principal: Principal, prompt: Prompt, variables: Mapping[str, Any]
    ) -> RunResult:
        body = prompt.chat_body(variables)
        completion = await self.gateway.complete(principal, body, prompt=_use(prompt))
        output, finish_reason = _text_of(completion)
        model = completion.get("model") or prompt.model
        return _result(prompt, model, output, finish_reason, completion.get("usage"))

    async def stream(
        self, principal: Principal, prompt: Prompt, variables: Mapping[str, Any]
    ) -> AsyncGenerator[Delta | RunResult, None]:
        """Deltas of text, then the whole result. Raises before yielding if the call is refused."""
        body = {**prompt.chat_body(variables), "stream": True}
        body["stream_options"] = {"include_usage": True}
        chunks = await _started(self.gateway.stream(principal, body, prompt=_use(prompt)))
        return self._relay(prompt, chunks)

    async def _relay(
        self, prompt: Prompt, chunks: AsyncGenerator[dict[str, Any], None]
    ) -> AsyncGenerator[Delta | RunResult, None]:
        collected = _Collected(model=prompt.model, parts=[])
        try:
            async for chunk in chunks:
                text = collected.take(chunk)
                if text:
                    yield Delta(content=text)
        finally:
            await chunks.aclose()  # a client gone mid-stream cancels the upstream call
        yield _result(
            prompt, collected.model, collected.text, collected.finish_reason, collected.usage
        )


def _use(prompt: Prompt) -> PromptUse:
    return PromptUse(name=prompt.name, version=prompt.version)


def _result(
    prompt: Prompt,
    model: str,
    output: str,
    finish_reason: str | None,
    usage: Mapping[str, Any] | None,
) -> RunResult:
    return RunResult(
        prompt=PromptRef(name=prompt.name, version=prompt.version),
        model=model,
        output=output,
        finish_reason=finish_reason,
        usage=dict(usage) if usage else None,
        data=parse_json_output(output) if prompt.wants_json else msgspec.UNSET,
    )


class AskService:
    """Retrieval under the caller's rules, then ``ASK_PROMPT`` through the gateway."""

    def __init__(
        self,
        search: SearchService,
        runner: PromptRunner,
        settings: Settings,
    ) -> None:
        self.search = search
        self.runner = runner
        self.settings = settings

    def max_k(self) -> int:
        return min(self.settings.ask_max_k, self.settings.vector_search_max_k)

    def prompt(self) -> Prompt:
        prompt = self.runner.prompts.get(self.settings.ask_prompt)
        if prompt is None:
            raise Unavailable(
                f"Asking needs the prompt {self.settings.ask_prompt!r} (ASK_PROMPT), which is not "
                "in PROMPTS_DIR",
                code="prompt_missing",
            )
        return prompt

    async def retrieve(
        self,
        collection: Collection,
        principal: Principal,
        *,
        question: str,
        k: int,
        mode: SearchMode = "hybrid",
        filter_: str | None = None,
        min_score: float | None = None,
    ) -> list[Citation]:
        """The chunks that answer ``question`` among the records the caller may list."""
        if not question.strip():
            raise invalid_field("The question is empty", "question", "empty")
        if "\x00" in question:  # Postgres text cannot hold it (the search would fail)
            raise invalid_field("The question contains a NUL character", "question", "NUL")
        if len(question) > self.settings.ask_max_question_chars:
            limit = self.settings.ask_max_question_chars
            raise invalid_field(
                f"The question is longer than {limit} characters (ASK_MAX_QUESTION_CHARS)",
                "question",
                "too long",
            )
        if not 1 <= k <= self.max_k():
            raise invalid_field(
                f"k must be between 1 and {self.max_k()} (ASK_MAX_K)", "k", "out of range"
            )
        self.prompt()  # before searching: a missing prompt costs no query embedding
        hits = await self.search.search(
            collection,
            principal,
            query=question,
            mode=mode,
            k=k,
            filter_=filter_,
            min_score=min_score,
            max_query_chars=self.settings.ask_max_question_chars,  # checked above
        )
        return [
            Citation(
                n=n,
                record_id=str(hit.row["id"]),
                chunk=ChunkRef(index=hit.chunk, content=hit.content),
                score=hit.score,
                file=hit.file or msgspec.UNSET,
                page=msgspec.UNSET if hit.page is None else hit.page,
            )
            for n, hit in enumerate(hits, start=1)
        ]

    def _variables(self, question: str, citations: list[Citation]) -> dict[str, Any]:
        return {
            "question": question,
            "context": [{"n": c.n, "text": c.chunk.content} for c in citations],
        }

    async def answer(
        self, principal: Principal, question: str, citations: list[Citation]
    ) -> Answer:
        result = await self.runner.run(
            principal, self.prompt(), self._variables(question, citations)
        )
        return cite(result.output, citations)

    async def stream(
        self, principal: Principal, question: str, citations: list[Citation]
    ) -> AsyncGenerator[Delta | Answer, None]:
        """Deltas of the answer, then the answer with its citations. Raises before yielding if
        the gateway refuses the call."""
        events = await self.runner.stream(
            principal, self.prompt(), self._variables(question, citations)
        )
        return self._with_citations(events, citations)

    async def _with_citations(
        self, events: AsyncGenerator[Delta | RunResult, None], citations: list[Citation]
    ) -> AsyncGenerator[Delta | Answer, None]:
        try:
            async for event in events:
                yield cite(event.output, citations) if isinstance(event, RunResult) else event
        finally:
            await events.aclose()


def cite(answer: str, citations: list[Citation]) -> Answer:
    """The answer with its citations, each marked ``cited`` if ``[n]`` appears in the text."""
    numbers = {int(found) for found in _CITED.findall(answer)}
    return Answer(
        answer=answer,
        citations=[msgspec.structs.replace(c, cited=c.n in numbers) for c in citations],
    )


async def answer_over_channel(
    channels: ChannelsPlugin,
    channel: str,
    ask_id: str,
    events: AsyncGenerator[Delta | Answer, None],
) -> None:
    """Publish an answer's deltas and then the answer on a realtime channel (``user:<id>`` or
    a room), as ``broadcast`` frames: ``ask.delta``, then ``ask.done`` or ``ask.error``."""

    async def publish(event: str, payload: dict[str, Any]) -> None:
        # As push_to_user sends: from no user, and an origin no socket has, so that every
        # subscriber of the channel (each socket of a user, everyone in a room) receives it.
        message = {"kind": "broadcast", "event": event, "payload": payload, "from": None}
        message["origin"] = ""
        await channels.wait_published(encode(message), [channel])

    try:
        async for event in events:
            if isinstance(event, Delta):
                await publish("ask.delta", {"ask_id": ask_id, "content": event.content})
            else:
                await publish("ask.done", {"ask_id": ask_id, **msgspec.to_builtins(event)})
    except DomainError as exc:
        await publish(
            "ask.error", {"ask_id": ask_id, "status": status_of(exc), "detail": exc.detail}
        )
    except Exception:
        log.exception("an answer over a channel failed", extra={"ask_id": ask_id})
        await publish(
            "ask.error",
            {"ask_id": ask_id, "status": 500, "detail": "The answer broke off; see the server log"},
        )
    finally:
        await events.aclose()


class BackgroundSlots:
    """How many asks answer over a channel at once in this process (ASK_MAX_BACKGROUND)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> None:
        if self.running >= self.limit:
            raise TooMany(
                "Too many answers are being sent over channels; retry shortly",
                code="too_many_asks",
                headers={"Retry-After": "1"},
            )
        self.running += 1

    def give_back(self) -> None:
        self.running -= 1


def realtime_target(channel: str, principal: Principal, settings: Settings) -> str:
    """The internal channel for ``channel``, which the caller must be allowed to subscribe to."""

    def refused(message: str) -> Invalid:
        return Invalid(
            "The channel is not one an answer can be sent to",
            errors=[{"field": "channel", "message": message, "source": "body"}],
        )

    if not settings.realtime_enabled:
        raise refused("realtime is turned off (REALTIME_ENABLED)")
    kind, _, name = channel.partition(":")
    if kind == "user":
        if name != str(principal.user_id):
            raise Forbidden("user:<id> is for that user only", code="forbidden")
        return user_channel(name)
    if kind == "room":
        if principal.org_id is None or not name:
            raise Forbidden("Rooms are shared within your active org", code="forbidden")
        return room_channel(principal.org_id, name)
    raise refused("must be user:<your id> or room:<name>")
