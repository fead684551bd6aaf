"""Rule clauses are built once per caller, except for rules that name @now."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from backend.app_collections.notes import Note
from backend.collections.compile import AuthContext
from backend.collections.expressions import ExpressionError
from backend.collections.rules import CompiledRules
from backend.collections.spec import Collection, Rules
from backend.config import settings_from_env

_DEFAULTS = settings_from_env({})
LIMITS = (_DEFAULTS.filter_max_length, _DEFAULTS.filter_cache_chars)


def test_a_callers_clause_is_reused_and_time_dependent_rules_are_not_cached():
    rules = CompiledRules(
        Collection(
            model=Note,
            rules=Rules(list="owner = @auth.id || public = true", view="created_at < @now"),
        ),
        *LIMITS,
    )
    alice, bob = AuthContext(id=uuid.uuid4()), AuthContext(id=uuid.uuid4())
    now = datetime.now(UTC)
    first = rules.clause("list", alice, now)
    assert rules.clause("list", alice, now + timedelta(hours=1)) is first
    assert rules.clause("list", bob, now) is not first
    assert str(rules.clause("list", bob, now).compile()) == str(first.compile())
    assert "view" not in rules.timeless and "list" in rules.timeless
    assert rules.clause("view", alice, now) is not rules.clause("view", alice, now)


def test_the_cache_is_bounded():
    rules = CompiledRules(Collection(model=Note, rules=Rules(list="owner = @auth.id")), *LIMITS)
    now = datetime.now(UTC)
    for _ in range(CompiledRules.CACHE_SIZE + 10):
        rules.clause("list", AuthContext(id=uuid.uuid4()), now)
    assert len(rules._clauses) <= CompiledRules.CACHE_SIZE


def test_a_filter_is_parsed_once_per_caller_unless_it_names_now():
    rules = CompiledRules(Collection(model=Note, rules=Rules(list="")), *LIMITS)
    alice, bob = AuthContext(id=uuid.uuid4()), AuthContext(id=uuid.uuid4())
    now = datetime.now(UTC)
    first = rules.filter_clause("owner = @auth.id && public = true", alice, now)
    assert rules.filter_clause("owner = @auth.id && public = true", alice, now) is first
    assert rules.filter_clause("owner = @auth.id && public = true", bob, now) is not first
    timed = "created_at < @now"
    assert rules.filter_clause(timed, alice, now) is not rules.filter_clause(timed, alice, now)


def test_a_bad_filter_is_refused_every_time():
    rules = CompiledRules(Collection(model=Note, rules=Rules(list="")), *LIMITS)
    for _ in range(2):
        with pytest.raises(ExpressionError):
            rules.filter_clause("colour = 'red'", AuthContext(), datetime.now(UTC))
