"""Reservation math, budget periods, who is charged, and what upstream output is refused."""

import uuid
from datetime import UTC, datetime

import pytest

from backend.ai.budgets import (
    BudgetExceeded,
    completion_reserve,
    estimate_prompt_tokens,
    period_bounds,
    subjects,
)
from backend.config import settings_from_env
from backend.identity import Principal
from backend.lib.upstream import UpstreamError, check_chunk, check_completion
from backend.problems import status_of

SETTINGS = settings_from_env({"AI_COMPLETION_RESERVE_TOKENS": "500"})


def chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "x" * 40}], **extra}


def test_prompt_estimate_counts_bytes_and_messages():
    # "user" + 40 bytes = 44 bytes → 11 tokens, plus 4 for the message.
    assert estimate_prompt_tokens(chat()) == 15
    two = {"messages": [{"role": "user", "content": "é" * 8}, {"role": "assistant", "content": ""}]}
    assert estimate_prompt_tokens(two) == 8 + 8  # ceil(29 bytes / 4), 4 per message
    assert estimate_prompt_tokens({"input": ["abcd", "efgh"]}) == 2
    assert estimate_prompt_tokens({"input": [1, 2, 3]}) == 3  # already tokens
    assert estimate_prompt_tokens({"input": [[1, 2], [3]]}) == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 500),
        ({"max_tokens": 20}, 20),
        ({"max_completion_tokens": 30, "max_tokens": 20}, 30),
        ({"max_tokens": 20, "n": 3}, 60),
        ({"n": 2}, 1000),
        ({"max_tokens": 0}, 500),
        ({"n": "lots"}, 500),
    ],
)
def test_completion_reserve_is_max_tokens_per_choice(extra, expected):
    assert completion_reserve(chat(**extra), SETTINGS) == expected


def test_embeddings_reserve_no_completion():
    assert completion_reserve({"model": "e", "input": "hello"}, SETTINGS) == 0


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("day", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("week", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),
        ("month", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_utc_calendar_windows(period, start, end):
    assert period_bounds(datetime(2026, 12, 31, 23, 59, tzinfo=UTC), period) == (start, end)


def test_a_call_charges_its_key_user_and_org():
    user, key, org = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert subjects(Principal(user_id=user, role="user", org_id=None)) == [("user", user)]
    principal = Principal(user_id=user, role="user", org_id=org, api_key_id=key)
    assert subjects(principal) == [("key", key), ("user", user), ("org", org)]


def test_budget_problems_say_when_to_retry():
    spent = BudgetExceeded("user", "tokens", 90, 100, 3600)
    assert status_of(spent) == 429
    assert spent.headers == {"Retry-After": "3600", "x-should-retry": "false"}
    assert spent.extra["code"] == "budget_exceeded"
    busy = BudgetExceeded("key", "requests", 60, 60, 12)
    assert busy.headers == {"Retry-After": "12"}  # the client's own retry may wait it out


@pytest.mark.parametrize("data", ["<html>", {"id": "x"}, {"choices": "no"}, None])
def test_malformed_completions_are_refused(data):
    with pytest.raises(UpstreamError, match="malformed"):
        check_completion(data)


def test_chunks_without_choices_are_usage_chunks():
    assert check_chunk({"choices": [], "usage": {"prompt_tokens": 1}})["choices"] == []
    with pytest.raises(UpstreamError):
        check_chunk("[")
