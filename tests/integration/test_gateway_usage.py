"""Gateway usage and budgets: rows written in batches, reports by owner, rollup into days,
budgets and request rates per key, user and org, and reservations under concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import msgspec
import psycopg
import pytest
import redis

from backend.ai.budgets import completion_reserve, estimate_prompt_tokens
from backend.ai.gateway import PromptUse
from backend.ai.usage import roll_up_usage
from backend.identity import Principal
from backend.lib.urls import libpq_database_url
from tests.integration.conftest import PASSWORD, bearer
from tests.integration.test_gateway import GATEWAY_MODELS, chat_body, marker
from tests.waiting import eventually


@pytest.fixture
def settings(settings, upstream, tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(GATEWAY_MODELS.format(base_url=upstream.base_url))
    return msgspec.structs.replace(settings, models_file=str(path), ai_usage_flush_seconds=0.05)


async def chat(client, token: str, text: str, **extra: Any):
    return await client.post(
        "/v1/chat/completions", json=chat_body(text, **extra), headers=bearer(token)
    )


def usage_rows(sql, user_id: str) -> list[dict[str, Any]]:
    columns = (
        "user_id, api_key_id, org_id, kind, model, upstream_model, prompt_tokens,"
        " completion_tokens, latency_ms, outcome, prompt_name, prompt_version"
    )
    rows = sql(f"SELECT {columns} FROM ai_usage WHERE user_id = %s ORDER BY created_at", user_id)
    names = [name.strip() for name in columns.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


async def rows_for(sql, user_id: str, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    """Wait for the background drain to write ``count`` rows for the user."""
    return await eventually(
        lambda: rows if len(rows := usage_rows(sql, user_id)) >= count else None,
        within=within,
        every=0.05,
        what=lambda: f"{len(usage_rows(sql, user_id))} of {count} usage rows written",
    )


async def test_each_call_is_recorded_off_the_request_path(client, sign_up, sql):
    alice = await sign_up()
    user = alice["user"]["id"]
    alice_token = alice["access_token"]
    response = await chat(client, alice_token, "one two three")
    assert response.status_code == 200
    usage = response.json()["usage"]
    streamed = await chat(client, alice_token, "four five", stream=True)
    assert streamed.status_code == 200
    failed = await chat(client, alice_token, "x", model="doomed")
    assert failed.status_code == 502
    rows = await rows_for(sql, user, 3)
    first, second, third = rows
    assert str(first["user_id"]) == user and first["api_key_id"] is None
    assert (first["model"], first["upstream_model"], first["kind"]) == ("chat", "fake-chat", "chat")
    assert (first["prompt_tokens"], first["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert first["outcome"] == "ok" and first["latency_ms"] > 0
    # The stream's usage came from upstream (asked with include_usage on the caller's behalf).
    assert (second["prompt_tokens"], second["completion_tokens"], second["outcome"]) == (
        2,
        3,
        "ok",
    )
    assert (third["outcome"], third["upstream_model"], third["prompt_tokens"]) == (
        "upstream_error",
        None,
        0,
    )


async def test_calls_without_reported_usage_are_counted_by_estimate(client, sign_up, sql):
    alice = await sign_up()
    body = chat_body("one two three four", model="mute", max_tokens=7)
    reserved_prompt = estimate_prompt_tokens(body)
    answered = await client.post(
        "/v1/chat/completions", json=body, headers=bearer(alice["access_token"])
    )
    assert answered.status_code == 200 and "usage" not in answered.json()
    streamed = await client.post(
        "/v1/chat/completions",
        json={**body, "stream": True},
        headers=bearer(alice["access_token"]),
    )
    assert streamed.status_code == 200
    json_row, stream_row = await rows_for(sql, alice["user"]["id"], 2)
    # JSON: what was reserved; a stream: the estimate and a token per streamed piece.
    assert (json_row["prompt_tokens"], json_row["completion_tokens"]) == (reserved_prompt, 7)
    # "echo: one two three four" streams as 5 pieces.
    assert (stream_row["prompt_tokens"], stream_row["completion_tokens"]) == (reserved_prompt, 5)


async def test_a_key_and_a_prompt_are_recorded(client, sign_up, sql):
    alice = await sign_up()
    headers = bearer(alice["access_token"])
    created = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)).json()
    assert (await chat(client, created["key"], "with a key")).status_code == 200
    gateway = client.app.state.gateway
    principal = Principal(user_id=uuid.UUID(alice["user"]["id"]), role="user", org_id=None)
    # The app runs in the test client's portal (its own loop): call the gateway there.
    answer = await asyncio.to_thread(
        client.blocking_portal.call,
        partial(gateway.complete, prompt=PromptUse("summarize", "3")),
        principal,
        chat_body("summarize this"),
    )
    assert answer["object"] == "chat.completion"
    keyed, prompted = await rows_for(sql, alice["user"]["id"], 2)
    assert str(keyed["api_key_id"]) == created["api_key"]["id"]
    assert (prompted["prompt_name"], prompted["prompt_version"]) == ("summarize", "3")


async def test_usage_report_is_your_own_unless_admin(client, sign_up, admin, sql):
    alice, bob = await sign_up(), await sign_up()
    for _ in range(2):
        await chat(client, alice["access_token"], "alpha beta")
    await chat(client, bob["access_token"], "gamma")
    await rows_for(sql, alice["user"]["id"], 2)
    await rows_for(sql, bob["user"]["id"], 1)

    mine = await client.get(
        "/ai/usage", params={"group_by": "user"}, headers=bearer(alice["access_token"])
    )
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["group_by"] == "user"
    assert [item["key"] for item in body["items"]] == [alice["user"]["id"]]
    assert body["items"][0]["requests"] == 2
    assert body["items"][0]["total_tokens"] == 2 * (2 + 3)  # "alpha beta", "echo: alpha beta"

    everyone = await client.get("/ai/usage", params={"group_by": "user"}, headers=admin)
    keys = {item["key"] for item in everyone.json()["items"]}
    assert {alice["user"]["id"], bob["user"]["id"]} <= keys
    by_model = await client.get("/ai/usage", headers=bearer(alice["access_token"]))
    assert [(i["key"], i["requests"]) for i in by_model.json()["items"]] == [("chat", 2)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "colour"}, "group_by"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "from"),
        # These reached Python's UTC conversion or a naive/aware comparison: a 500.
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"to": "2026-01-01T00:00:00"}, "to"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ({"to": "9999-12-31T23:59:59-14:00"}, "to"),
    ],
)
async def test_bad_usage_queries_name_the_field(client, sign_up, params, field):
    alice = await sign_up()
    response = await client.get("/ai/usage", params=params, headers=bearer(alice["access_token"]))
    assert response.status_code in (400, 422), response.text
    assert field in response.text


async def test_old_rows_roll_up_into_days_and_reports_still_count_them(
    client, sign_up, sql, clock, database_url, settings
):
    alice = await sign_up()
    headers = bearer(alice["access_token"])
    # An API key works whatever the clock says (access tokens would be from the future).
    token = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)).json()[
        "key"
    ]
    clock.advance(days=-40)
    for _ in range(2):
        assert (await chat(client, token, "old call")).status_code == 200
    clock.advance(days=40)
    assert (await chat(client, token, "new call")).status_code == 200
    await rows_for(sql, alice["user"]["id"], 3)
    window = {
        "from": (clock.now() - timedelta(days=45)).isoformat(),
        "to": (clock.now() + timedelta(seconds=1)).isoformat(),
    }
    before = (await client.get("/ai/usage", params=window, headers=bearer(token))).json()

    with psycopg.connect(libpq_database_url(database_url)) as conn:
        assert roll_up_usage(conn, settings.ai_usage_retention_days, clock.now()) == 2
        assert roll_up_usage(conn, settings.ai_usage_retention_days, clock.now()) == 0
    assert len(usage_rows(sql, alice["user"]["id"])) == 1
    ((requests, tokens),) = sql(
        "SELECT requests, prompt_tokens + completion_tokens FROM ai_usage_daily WHERE user_id = %s",
        alice["user"]["id"],
    )
    assert requests == 2 and tokens == 2 * (2 + 3)
    after = (await client.get("/ai/usage", params=window, headers=bearer(token))).json()
    assert after["items"] == before["items"]
    assert after["items"][0]["requests"] == 3


async def test_budget_overrides_are_for_admins_and_take_effect_at_once(
    client, sign_up, admin, upstream
):
    alice = await sign_up()
    path = f"/ai/budgets/user/{alice['user']['id']}"
    limits = {"tokens_per_period": 10}
    assert (
        await client.put(path, json=limits, headers=bearer(alice["access_token"]))
    ).status_code == 403
    put = await client.put(path, json=limits, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["tokens_per_period"] == 10 and put.json()["overridden"] is True

    tag = marker()
    refused = await chat(client, alice["access_token"], tag)  # reserves 1024 > 10
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["code"] == "budget_exceeded" and problem["subject"] == "user"
    assert problem["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["x-should-retry"] == "false"
    assert upstream.state.calls_with(tag) == []  # refused before any upstream call

    listed = await client.get("/ai/budgets", headers=admin)
    assert [b["id"] for b in listed.json()["items"]] == [alice["user"]["id"]]
    cleared = await client.delete(path, headers=admin)
    assert cleared.status_code == 204
    assert (await chat(client, alice["access_token"], tag)).status_code == 200


async def test_a_key_has_its_own_budget(client, sign_up, admin):
    alice = await sign_up()
    headers = bearer(alice["access_token"])
    created = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)).json()
    await client.put(
        f"/ai/budgets/key/{created['api_key']['id']}",
        json={"tokens_per_period": 1},
        headers=admin,
    )
    refused = await chat(client, created["key"], "hello")
    assert refused.status_code == 429 and refused.json()["subject"] == "key"
    assert (await chat(client, alice["access_token"], "hello")).status_code == 200
    mine = (await client.get("/ai/budgets/me", headers=bearer(created["key"]))).json()["items"]
    assert [(b["kind"], b["tokens_per_period"]) for b in mine] == [("key", 1), ("user", 0)]


@pytest.mark.parametrize(("kind", "status"), [("team", 400), ("user", 400)])
async def test_bad_budget_puts_are_refused(client, admin, kind, status):
    response = await client.put(
        f"/ai/budgets/{kind}/{uuid.uuid4()}",
        json={"tokens_per_period": -1},
        headers=admin,
    )
    assert response.status_code in (400, 422)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"tokens_per_period": 2**63}, "tokens_per_period"),
        ({"requests_per_minute": 2**31}, "requests_per_minute"),
    ],
)
async def test_a_limit_past_its_column_is_a_422_not_a_500(client, admin, limits, field):
    subject = uuid.uuid4()
    response = await client.put(f"/ai/budgets/user/{subject}", json=limits, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    listed = await client.get("/ai/budgets", headers=admin)
    assert str(subject) not in [b["id"] for b in listed.json()["items"]]


async def test_budgets_hold_under_concurrency(client, sign_up, admin, sql, upstream):
    """20 calls at once against a budget that fits 5 reservations: calls are admitted only
    while spent + reserved fits, so what is spent never exceeds the budget, and the ledger
    ends equal to the usage recorded."""
    alice = await sign_up()
    tag = marker()
    body = chat_body(f"{tag} a b c", max_tokens=8)
    reserve = estimate_prompt_tokens(body) + completion_reserve(body, client.app.state.settings)
    budget = 5 * reserve
    await client.put(
        f"/ai/budgets/user/{alice['user']['id']}",
        json={"tokens_per_period": budget},
        headers=admin,
    )
    responses = await asyncio.gather(
        *(
            client.post("/v1/chat/completions", json=body, headers=bearer(alice["access_token"]))
            for _ in range(20)
        )
    )
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) + len(refused) == 20
    assert all(r.json()["code"] == "budget_exceeded" for r in refused)
    assert len(admitted) >= 5  # five reservations always fit
    assert len(upstream.state.calls_with(tag)) == len(admitted)
    spent = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    assert spent <= budget
    rows = await rows_for(sql, alice["user"]["id"], 20)
    recorded = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    assert recorded == spent
    assert sum(r["outcome"] == "budget_exceeded" for r in rows) == len(refused)
    gateway = client.app.state.gateway
    ledger = await asyncio.to_thread(
        client.blocking_portal.call,
        gateway.budgets.used,
        "user",
        uuid.UUID(alice["user"]["id"]),
        datetime.now(UTC),
    )
    assert ledger == spent


@pytest.fixture
def tuned(settings, clock):
    """An app (its test client) built with some settings changed."""

    @contextlib.asynccontextmanager
    async def _tuned(**overrides: Any):
        from litestar.testing import AsyncTestClient

        from backend.app import create_app

        app = create_app(msgspec.structs.replace(settings, **overrides), clock=clock)
        async with AsyncTestClient(app) as test_client:
            yield test_client

    return _tuned


async def signed_up(client) -> dict[str, Any]:
    response = await client.post(
        "/auth/signup", json={"email": f"{marker()}@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    return response.json()


async def test_requests_per_minute_from_settings(tuned, upstream):
    async with tuned(ai_user_requests_per_minute=2) as client:
        alice = await signed_up(client)
        tag = marker()
        statuses = [(await chat(client, alice["access_token"], tag)).status_code for _ in range(3)]
        refused = await chat(client, alice["access_token"], tag)
    assert statuses == [200, 200, 429]
    assert refused.json()["limit"] == "requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "x-should-retry" not in refused.headers
    assert len(upstream.state.calls_with(tag)) == 2


async def test_a_default_key_budget_from_settings(tuned):
    async with tuned(ai_key_tokens_per_period=100, ai_completion_reserve_tokens=40) as client:
        alice = await signed_up(client)
        headers = bearer(alice["access_token"])
        key = (await client.post("/auth/api-keys", json={"name": "ci"}, headers=headers)).json()
        # Each call holds its prompt estimate + 40 and spends a few tokens.
        answered = [(await chat(client, key["key"], "hi")).status_code for _ in range(30)]
        assert (await chat(client, alice["access_token"], "hi")).status_code == 200
    assert answered[0] == 200 and answered[-1] == 429
    assert answered == sorted(answered)  # admitted until the budget no longer fits, then none


async def test_usage_is_written_in_batches_of_the_setting(tuned, sql):
    async with tuned(ai_usage_batch_size=2, ai_usage_flush_seconds=0.05) as client:
        alice = await signed_up(client)
        for i in range(5):
            assert (await chat(client, alice["access_token"], f"call {i}")).status_code == 200
        rows = await rows_for(sql, alice["user"]["id"], 5)
    assert len(rows) == 5


async def test_buffered_usage_is_written_when_the_app_stops(tuned, sql):
    async with tuned(ai_usage_flush_seconds=3600) as client:  # no drain while it runs
        alice = await signed_up(client)
        assert (await chat(client, alice["access_token"], "last words")).status_code == 200
        assert usage_rows(sql, alice["user"]["id"]) == []
    assert len(usage_rows(sql, alice["user"]["id"])) == 1


async def test_alias_retries_come_before_fallbacks(tuned, upstream, tmp_path):
    models = tmp_path / "retrying.yaml"
    models.write_text(
        f'providers:\n  fake: {{base_url: "{upstream.base_url}", api_key: k}}\n'
        "models:\n  chat: {provider: fake, model: fake-chat, retries: 0}\n"
        "  twice: {provider: fake, model: fake-500, retries: 1, fallbacks: [chat]}\n"
    )
    async with tuned(models_file=str(models)) as client:
        alice = await signed_up(client)
        tag = marker()
        response = await chat(client, alice["access_token"], tag, model="twice")
    assert response.status_code == 200
    assert [c.body["model"] for c in upstream.state.calls_with(tag)] == [
        "fake-500",
        "fake-500",
        "fake-chat",
    ]


async def test_overrides_are_copied_back_into_a_redis_that_lost_them(
    tuned, admin, client, redis_url
):
    alice = await signed_up(client)
    await client.put(
        f"/ai/budgets/user/{alice['user']['id']}",
        json={"tokens_per_period": 1},
        headers=admin,
    )
    assert (await chat(client, alice["access_token"], "x")).status_code == 429
    flushed = redis.Redis.from_url(redis_url)
    flushed.delete("litebase:ai:limits")
    flushed.close()
    assert (await chat(client, alice["access_token"], "x")).status_code == 200
    async with tuned(ai_budget_sync_seconds=0.05) as other:  # another API process
        # It copies the overrides from Postgres within a sync or two: refused from then on.
        async def refused() -> bool:
            return (await chat(other, alice["access_token"], "x")).status_code == 429

        await eventually(refused, within=5, every=0.05, what="the override copied back to Redis")


async def test_a_call_answered_just_before_shutdown_is_still_recorded(tuned, upstream, sql):
    """The settlement runs beside the answer; shutting down waits for it, then drains."""
    async with tuned(ai_usage_flush_seconds=3600) as client:  # no drain but the last one
        alice = await signed_up(client)
        response = await chat(client, alice["access_token"], marker())
        assert response.status_code == 200
    (row,) = usage_rows(sql, alice["user"]["id"])
    usage = response.json()["usage"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["outcome"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        "ok",
    )
