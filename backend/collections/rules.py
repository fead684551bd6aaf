"""A collection's rules, parsed and checked once, and the WHERE clause each gives a caller
(kept per caller, bounded): what every read and write of records filters by."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    false,
    true,
)

from backend.collections.compile import AuthContext, to_sql
from backend.collections.expressions import (
    And,
    Compare,
    ExpressionError,
    Node,
    Not,
    Now,
    Or,
    check,
    check_client_filter,
    parse,
)
from backend.collections.spec import Collection
from backend.config import Settings
from backend.identity import Principal

ACTIONS = ("list", "view", "create", "update", "delete")


class CompiledRules:
    """A collection's rules, parsed and checked once (a bad rule stops the app at start).

    A rule's SQL depends only on who asks (and on the time, for rules naming @now), so the
    clause for each caller is built once and kept (a bounded cache): the hot path of every read
    skips rebuilding the same WHERE clause.
    """

    CACHE_SIZE = 4096

    def __init__(self, collection: Collection, max_length: int, filter_cache_chars: int) -> None:
        self.collection = collection
        self.nodes: dict[str, Node | None] = {}
        self.admin_only: set[str] = set()
        self.timeless: set[str] = set()
        self._clauses: dict[tuple[str, AuthContext], ColumnElement[bool]] = {}
        self.filter_max_length = max_length
        self._filters: dict[tuple[str, AuthContext], ColumnElement[bool]] = {}
        # Client filters are the callers' own text: the cache is bounded by their total size
        # too (FILTER_CACHE_CHARS), not only by their count.
        self.filter_cache_chars = filter_cache_chars
        self._filter_chars = 0
        for action in ACTIONS:
            text = getattr(collection.rules, action)
            if text is None:
                self.admin_only.add(action)
                self.nodes[action] = None
                continue
            try:
                node = parse(text, max_length=max(max_length, len(text)))
                if node is not None:
                    check(node, collection)
            except ExpressionError as exc:
                raise ValueError(
                    f"the {action} rule of {collection.name!r} is wrong: {exc}"
                ) from exc
            self.nodes[action] = node
            if not _names_now(node):
                self.timeless.add(action)

    def clause(self, action: str, auth: AuthContext, now: datetime) -> ColumnElement[bool]:
        """The rule's SQL for a caller subject to rules (an admin-only rule admits none)."""
        if action in self.admin_only:
            return false()
        if action not in self.timeless:
            return to_sql(self.nodes[action], self.collection, auth, now)
        key = (action, auth)
        found = self._clauses.get(key)
        if found is None:
            if len(self._clauses) >= self.CACHE_SIZE:
                self._clauses.clear()  # rare: more distinct callers than the cache holds
            found = self._clauses[key] = to_sql(self.nodes[action], self.collection, auth, now)
        return found

    def filter_clause(self, text: str, auth: AuthContext, now: datetime) -> ColumnElement[bool]:
        """A client filter's SQL, kept per (text, caller) like the rules' unless it names @now.

        Raises ExpressionError for a filter that does not parse or check (never kept).
        """
        key = (text, auth)
        found = self._filters.get(key)
        if found is not None:
            return found
        node = parse(text, max_length=self.filter_max_length)
        if node is None:
            return true()
        check(node, self.collection)
        check_client_filter(node)
        clause = to_sql(node, self.collection, auth, now)
        if not _names_now(node):
            too_big = self._filter_chars + len(text) > self.filter_cache_chars
            if len(self._filters) >= self.CACHE_SIZE or too_big:
                self._filters.clear()
                self._filter_chars = 0
            self._filters[key] = clause
            self._filter_chars += len(text)
        return clause

    def keeps_filter(self, text: str, auth: AuthContext) -> bool:
        """Whether ``filter_clause(text, auth, …)`` is kept (it names no @now)."""
        return (text, auth) in self._filters


def _names_now(node: Node | None) -> bool:
    match node:
        case None:
            return False
        case Compare(left=left, right=right):
            return isinstance(left, Now) or isinstance(right, Now)
        case And(items=items) | Or(items=items):
            return any(_names_now(item) for item in items)
        case Not(item=item):
            return _names_now(item)
    raise AssertionError(node)


def compile_rules(
    collections: Iterable[Collection], settings: Settings
) -> dict[str, CompiledRules]:
    """Each collection's rules, under the filter limits of ``settings``."""
    return {
        c.name: CompiledRules(c, settings.filter_max_length, settings.filter_cache_chars)
        for c in collections
    }


def auth_context(principal: Principal | None) -> AuthContext:
    if principal is None:
        return AuthContext()
    return AuthContext(
        id=principal.user_id,
        role=principal.role,
        org=principal.org_id,
        anonymous=principal.is_anonymous,
    )


def rule_clause(
    compiled: CompiledRules, action: str, principal: Principal | None, now: datetime
) -> ColumnElement[bool]:
    """The WHERE clause of one rule for this caller (admins and service keys: every row; an
    admin-only rule: none for anyone else). Requests and workers read records through it."""
    if principal is not None and principal.bypasses_rules:
        return true()
    return compiled.clause(action, auth_context(principal), now)
