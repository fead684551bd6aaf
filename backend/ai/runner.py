"""Running a prompt through the gateway: at once, or as a stream of text deltas.

A prompt run renders the prompt's messages from the caller's variables and makes the chat call
through the gateway as the caller, naming the prompt so usage records it. A stream yields the
text as the model writes it, then the whole result; a call the gateway refuses (budget, unknown
model, every upstream failing) is raised before the stream starts, so the route can answer it
as a problem.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from backend.ai.gateway import Gateway, PromptUse
from backend.ai.prompts import Prompt, PromptLibrary, parse_json_output
from backend.identity import Principal


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
