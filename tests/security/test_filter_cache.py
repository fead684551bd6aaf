"""Issue 18.10: the compiled-filter cache was bounded by count only, so a few thousand
distinct 4 kB filters from an anonymous caller held a few thousand large SQL trees each."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.app_collections.notes import notes
from backend.collections.compile import AuthContext
from backend.collections.rules import CompiledRules

BUDGET = 10_000


def test_cached_filters_never_hold_more_than_their_character_budget():
    rules = CompiledRules(notes, 4096, BUDGET)
    anonymous, now = AuthContext(), datetime.now(UTC)
    padding = "x" * 3000
    for n in range(50):
        text = f"title = '{padding}{n}'"
        rules.filter_clause(text, anonymous, now)
        assert rules.keeps_filter(text, anonymous)  # the newest is kept…
        kept = [f"title = '{padding}{m}'" for m in range(n + 1)]
        held = sum(len(t) for t in kept if rules.keeps_filter(t, anonymous))
        assert held <= BUDGET  # …and never more than the budget in all
