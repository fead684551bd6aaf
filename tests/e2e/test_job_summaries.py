"""summarize_record through the real worker and the gateway against the fake upstream: the
summary lands in the job's result with its usage recorded under the prompt, a record the owner
may not see fails as a missing one does, and a spent budget fails before any upstream call."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, finished_job, signed_up, sql
from tests.waiting import eventually

NOTES = "/collections/notes/records"


def _chats(upstream, marker: str) -> list:
    """The chat calls the fake upstream received about ``marker`` (embeddings are not)."""
    return [c for c in upstream.state.calls_with(marker) if c.path == "/v1/chat/completions"]


async def _summarize(client: httpx.AsyncClient, record_id: str, **extra: Any) -> dict:
    submitted = await client.post(
        "/jobs",
        json={
            "type": "summarize_record",
            "input": {"collection": "notes", "id": record_id, **extra},
        },
    )
    assert submitted.status_code == 202, submitted.text
    return await finished_job(client, submitted.json()["id"])


async def _note(client: httpx.AsyncClient, marker: str) -> dict:
    created = await client.post(
        NOTES, json={"title": f"Volcanoes {marker}", "body": f"Lava is molten rock {marker}."}
    )
    assert created.status_code == 201, created.text
    return created.json()


@pytest.fixture
async def alice(stack):
    client = await signed_up(stack, admin=False)
    yield client
    await client.aclose()


@pytest.fixture
async def bob(stack):
    client = await signed_up(stack, admin=False)
    yield client
    await client.aclose()


async def test_a_summary_lands_in_the_result_with_its_usage_under_the_prompt(
    stack, alice, upstream
):
    # In an org, signed in again so the token (and the job) carry it.
    org = (await alice.post("/orgs", json={"name": "Summaries"})).json()
    me = (await alice.get("/auth/me")).json()
    tokens = (
        await alice.post(
            "/auth/token",
            json={"grant_type": "password", "email": me["email"], "password": PASSWORD},
        )
    ).json()
    alice.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    marker = uuid.uuid4().hex[:10]
    note = await _note(alice, marker)

    job = await _summarize(alice, note["id"])

    assert job["status"] == "succeeded", job
    result = job["result"]
    # The fake upstream echoes the prompt's last message: the summarize prompt with the text.
    assert result["summary"].startswith("echo: Summarize the text below in at most 3 sentences")
    assert f"Volcanoes {marker}\n\nLava is molten rock {marker}." in result["summary"]
    assert result["prompt"] == {"name": "summarize", "version": "1"}
    assert (result["collection"], result["id"], result["fields"]) == (
        "notes",
        note["id"],
        ["title", "body"],
    )
    assert result["model"] == "gpt-4o-mini" and result["finish_reason"] == "stop"
    usage = result["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    (call,) = _chats(upstream, marker)
    assert call.body["model"] == "fake-chat" and call.body["max_tokens"] == 600  # the prompt's
    rows = await eventually(
        lambda: sql(
            stack,
            "SELECT user_id::text, org_id::text, api_key_id, kind, model, prompt_name,"
            " prompt_version, outcome, prompt_tokens, completion_tokens"
            " FROM ai_usage WHERE user_id = %s",
            me["id"],
        ),
        within=15,
        what="a usage row",
    )
    assert rows == [
        (
            me["id"],
            org["id"],
            None,
            "chat",
            "gpt-4o-mini",
            "summarize",
            "1",
            "ok",
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    ]

    # One field, as asked.
    job = await _summarize(alice, note["id"], field="body")
    assert job["status"] == "succeeded", job
    assert job["result"]["fields"] == ["body"]
    assert f"Lava is molten rock {marker}." in job["result"]["summary"]
    assert f"Volcanoes {marker}" not in job["result"]["summary"]


async def test_a_record_the_owner_may_not_see_fails_as_a_missing_one(stack, alice, bob, upstream):
    marker = uuid.uuid4().hex[:10]
    private = await _note(alice, marker)  # notes are private unless public

    hidden = await _summarize(bob, private["id"])
    missing = await _summarize(bob, str(uuid.uuid4()))

    assert hidden["status"] == missing["status"] == "failed"
    assert hidden["error"] == missing["error"] == "not_found: No such record in notes"
    assert hidden["result"] is None and hidden["attempts"] == 1  # not retried
    assert _chats(upstream, marker) == []  # no chat call carried the text


async def test_over_budget_the_job_fails_without_an_upstream_call(stack, alice, upstream):
    admin = await signed_up(stack, admin=True)
    try:
        me = (await alice.get("/auth/me")).json()
        put = await admin.put(f"/ai/budgets/user/{me['id']}", json={"tokens_per_period": 50})
        assert put.status_code == 200, put.text
    finally:
        await admin.aclose()
    marker = uuid.uuid4().hex[:10]
    note = await _note(alice, marker)

    # The prompt holds 600 completion tokens (its max_tokens) before the call: over 50.
    job = await _summarize(alice, note["id"])

    assert job["status"] == "failed", job
    assert job["error"].startswith("budget_exceeded: The user's token budget"), job["error"]
    assert job["attempts"] == 1
    assert _chats(upstream, marker) == []
    rows = await eventually(
        lambda: sql(
            stack,
            "SELECT prompt_name, outcome, prompt_tokens + completion_tokens FROM ai_usage"
            " WHERE user_id = %s",
            me["id"],
        ),
        within=15,
        what="a usage row",
    )
    assert rows == [("summarize", "budget_exceeded", 0)]
