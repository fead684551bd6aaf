"""Asking a collection: retrieve the chunks under the caller's rules, then answer from them.

Asking searches the collection under the caller's list rule, so no chunk of a record they may
not list can reach the prompt, numbers the chunks, renders ``ASK_PROMPT`` with them and runs it
(``backend.ai.runner``), answering with the chunks as citations, at once or as a stream of text
deltas ending in the full answer. Sending that stream over a realtime channel is
``backend.ai.ask_channels``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Annotated, Any, Literal

import msgspec

from backend.ai.prompts import Prompt
from backend.ai.runner import Delta, PromptRunner, RunResult
from backend.collections.spec import Collection
from backend.config import Settings
from backend.errors import Unavailable, invalid_field
from backend.identity import Principal
from backend.vectors.service import SearchService

SearchMode = Literal["vector", "text", "hybrid"]
_CITED = re.compile(r"\[(\d{1,3})\]")


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
            # A document's passage says which file, and page, it is from: the model may say so.
            "context": [
                {
                    "n": c.n,
                    "text": c.chunk.content,
                    **({} if c.file is msgspec.UNSET else {"file": c.file}),
                    **({} if c.page is msgspec.UNSET else {"page": c.page}),
                }
                for c in citations
            ],
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
