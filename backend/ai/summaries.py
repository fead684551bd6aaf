"""Summarizing one record through the model gateway (the ``summarize_record`` job).

The job names a collection, a record and, optionally, the text fields and the prompt. What can
be checked without reading the record is checked when the job is submitted (422 naming the
field); the record itself is read when the job runs, under its owner's view rule, so a record
they may not see is "No such record" exactly as a missing one is. The call goes through the
gateway as the owner with the prompt named, so it is metered, budgeted and recorded like a
prompt run over HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Connection, select

from backend.ai.prompts import Prompt, PromptLibrary
from backend.ai.runner import PromptRef, PromptRunner
from backend.collections.rules import CompiledRules, rule_clause
from backend.collections.spec import READ_ONLY_FIELDS, Collection, CollectionRegistry
from backend.errors import Invalid, NotFound, invalid_field
from backend.identity import Principal
from backend.jobs.types import SummarizeRecord

# The variable a summary prompt receives the record's text in.
TEXT_VARIABLE = "text"
SEPARATOR = "\n\n"


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """A summarize_record job's result."""

    collection: str
    id: str
    fields: list[str]
    prompt: PromptRef
    model: str
    summary: str
    finish_reason: str | None
    usage: dict[str, Any] | None


def _input_problem(field: str, message: str) -> Invalid:
    detail = f"The input does not fit summarize_record: {field.removeprefix('input.')} {message}"
    return invalid_field(detail, field, message)


def default_fields(collection: Collection) -> tuple[str, ...]:
    """What is summarized when the job names no field: the embedded fields, else every text
    field the caller writes."""
    if collection.embed is not None:
        return tuple(collection.embed.fields)
    return tuple(
        name
        for name, spec in collection.fields.items()
        if spec.kind == "text" and name not in READ_ONLY_FIELDS
    )


def summary_fields(collection: Collection, job_input: SummarizeRecord) -> tuple[str, ...]:
    """The text fields to summarize, in the order named; 422 for one that is not a text field."""
    if job_input.field is not None and job_input.fields is not None:
        raise _input_problem("input.fields", "cannot be given with field; give one of them")
    if job_input.field is not None:
        named, paths = [job_input.field], ["input.field"]
    elif job_input.fields is not None:
        named = job_input.fields
        paths = [f"input.fields.{i}" for i in range(len(named))]
    else:
        fields = default_fields(collection)
        if not fields:
            raise _input_problem("input.fields", f"are required: {collection.name} has no text")
        return fields
    for name, path in zip(named, paths, strict=True):
        spec = collection.fields.get(name)
        if spec is None or spec.kind != "text":
            raise _input_problem(path, f"is not a text field of {collection.name}")
    return tuple(dict.fromkeys(named))


def summary_prompt(prompts: PromptLibrary, name: str) -> Prompt:
    """The prompt to summarize with; 422 if there is none of that name or it takes no text."""
    prompt = prompts.get(name)
    if prompt is None:
        raise _input_problem("input.prompt", "is not a prompt (GET /ai/prompts lists them)")
    properties = prompt.input_schema.get("properties")
    if not isinstance(properties, Mapping) or TEXT_VARIABLE not in properties:
        raise _input_problem("input.prompt", f"does not take a {TEXT_VARIABLE!r} variable")
    return prompt


def check_summary(
    job_input: SummarizeRecord, collections: CollectionRegistry, prompts: PromptLibrary
) -> tuple[Collection, tuple[str, ...], Prompt]:
    """Everything about the job that holds without reading the record (submit and run)."""
    collection = collections.get(job_input.collection)
    if collection is None:
        raise _input_problem("input.collection", "is not a collection")
    return (
        collection,
        summary_fields(collection, job_input),
        summary_prompt(prompts, job_input.prompt),
    )


def record_text(
    sql: Connection,
    rules: CompiledRules,
    principal: Principal,
    job_input: SummarizeRecord,
    fields: tuple[str, ...],
    now: datetime,
) -> str:
    """The record's text in ``fields``, read under the caller's view rule: 404 for a record
    they may not see, worded as for one that does not exist."""
    collection = rules.collection
    table = collection.table
    row = sql.execute(
        select(*(table.c[name] for name in fields)).where(
            table.c.id == job_input.id, rule_clause(rules, "view", principal, now)
        )
    ).first()
    if row is None:
        raise NotFound(f"No such record in {collection.name}", code="not_found")
    text = SEPARATOR.join(str(value).strip() for value in row if value and str(value).strip())
    if not text:
        raise Invalid(
            f"The record has no text in {', '.join(fields)} to summarize",
            code="nothing_to_summarize",
        )
    return text


async def summarize(
    runner: PromptRunner,
    principal: Principal,
    prompt: Prompt,
    job_input: SummarizeRecord,
    fields: tuple[str, ...],
    text: str,
) -> Summary:
    """The prompt run on the text, through the gateway as ``principal``."""
    run = await runner.run(principal, prompt, {TEXT_VARIABLE: text})
    return Summary(
        collection=job_input.collection,
        id=str(job_input.id),
        fields=list(fields),
        prompt=run.prompt,
        model=run.model,
        summary=run.output,
        finish_reason=run.finish_reason,
        usage=run.usage,
    )
