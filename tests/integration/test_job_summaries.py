"""summarize_record: input checked at submit (422 naming the field), and the record read under
its owner's view rule (a hidden record reads exactly as a missing one)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from backend.ai.prompts import load_library
from backend.ai.summaries import check_summary, record_text
from backend.collections.rules import compile_rules
from backend.collections.spec import CollectionRegistry
from backend.errors import DomainError, NotFound
from backend.identity import Principal
from backend.jobs.types import SummarizeRecord
from backend.lib.urls import sync_database_url
from tests.integration.conftest import bearer

SOME_ID = "0192e4b0-0000-7000-8000-000000000001"


@pytest.fixture
async def caller(sign_up) -> dict[str, str]:
    return bearer((await sign_up())["access_token"])


@pytest.mark.parametrize(
    ("job_input", "field"),
    [
        ({"id": SOME_ID}, "input.collection"),
        ({"collection": "notes"}, "input.id"),
        ({"collection": "notes", "id": "not-a-uuid"}, "input.id"),
        ({"collection": "nope", "id": SOME_ID}, "input.collection"),
        ({"collection": "notes", "id": SOME_ID, "field": "colour"}, "input.field"),
        ({"collection": "notes", "id": SOME_ID, "field": "public"}, "input.field"),  # a bool
        ({"collection": "notes", "id": SOME_ID, "fields": ["title", "tags"]}, "input.fields.1"),
        ({"collection": "notes", "id": SOME_ID, "fields": []}, "input.fields"),
        (
            {"collection": "notes", "id": SOME_ID, "field": "body", "fields": ["title"]},
            "input.fields",
        ),
        ({"collection": "notes", "id": SOME_ID, "prompt": "no_such_prompt"}, "input.prompt"),
        # rag_answer takes a question and passages, not a text.
        ({"collection": "notes", "id": SOME_ID, "prompt": "rag_answer"}, "input.prompt"),
        ({"collection": "notes", "id": SOME_ID, "style": "bullets"}, "input.style"),
    ],
)
async def test_input_that_cannot_be_summarized_is_422_naming_the_field(
    client, caller, sql, job_input, field
):
    response = await client.post(
        "/jobs", json={"type": "summarize_record", "input": job_input}, headers=caller
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert sql("SELECT count(*) FROM jobs") == [(0,)]  # nothing queued


@pytest.mark.parametrize(
    "extra", [{}, {"field": "body"}, {"fields": ["body", "title"]}, {"prompt": "summarize"}]
)
async def test_a_summary_of_any_id_is_queued(client, caller, extra):
    # The record is not read at submit: whether it exists or is visible is the job's to find,
    # and both answers read the same.
    response = await client.post(
        "/jobs",
        json={"type": "summarize_record", "input": {"collection": "notes", "id": SOME_ID, **extra}},
        headers=caller,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"


async def test_the_record_is_read_under_the_owners_view_rule(client, sign_up, settings):
    alice, bob = await sign_up(), await sign_up()
    created = {}
    for public in (False, True):
        response = await client.post(
            "/collections/notes/records",
            json={"title": f"public={public}", "body": "Lava is molten rock.", "public": public},
            headers=bearer(alice["access_token"]),
        )
        assert response.status_code == 201, response.text
        created[public] = response.json()["id"]
    registry = CollectionRegistry.discover()
    prompts = load_library(Path(settings.prompts_dir))

    def read(user: dict, record_id: str, role: str = "user", **fields) -> str:
        job_input = SummarizeRecord(collection="notes", id=uuid.UUID(record_id), **fields)
        collection, names, _ = check_summary(job_input, registry, prompts)
        rules = compile_rules([collection], settings)["notes"]
        principal = Principal(user_id=uuid.UUID(user["user"]["id"]), role=role, org_id=None)
        engine = create_engine(sync_database_url(settings.database_url), poolclass=NullPool)
        try:
            with engine.connect() as connection:
                return record_text(
                    connection, rules, principal, job_input, names, datetime.now(UTC)
                )
        finally:
            engine.dispose()

    assert read(alice, created[False]) == "public=False\n\nLava is molten rock."
    assert read(alice, created[False], field="body") == "Lava is molten rock."
    assert read(bob, created[True]) == "public=True\n\nLava is molten rock."
    assert read(bob, created[False], role="admin") == "public=False\n\nLava is molten rock."
    problems = []
    for record_id in (created[False], str(uuid.uuid4())):  # hidden, and missing
        with pytest.raises(DomainError) as refused:
            read(bob, record_id)
        problems.append((type(refused.value), refused.value.detail, refused.value.extra))
    assert (
        problems[0] == problems[1] == (NotFound, "No such record in notes", {"code": "not_found"})
    )
