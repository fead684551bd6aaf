"""The rule/filter language: what parses, what is refused, and where."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from backend.collections.compile import AuthContext, to_predicate
from backend.collections.expressions import (
    MAX_NESTING,
    And,
    AuthVar,
    Compare,
    ExpressionError,
    Field,
    Not,
    Or,
    Value,
    check,
    coerce,
    parse,
)

LIMIT = 4096
KINDS = {
    "title": "text",
    "n": "integer",
    "public": "bool",
    "owner": "uuid",
    "created_at": "datetime",
    "tags": "text_list",
    "meta": "json",
    "owner.email": "text",
}


class Fields:
    def kind_of(self, path):
        return KINDS.get(".".join(path))


def _parsed(text):
    node = parse(text, max_length=LIMIT)
    check(node, Fields())
    return node


def test_precedence_not_binds_tighter_than_and_than_or():
    node = parse("a = 1 || b = 2 && !c = 3", max_length=LIMIT)
    assert isinstance(node, Or)
    assert isinstance(node.items[1], And)
    assert isinstance(node.items[1].items[1], Not)


def test_operands_and_literals():
    node = parse(
        "owner.email ~ 'x\\'y' && n >= -1.5 && public != null && owner = @auth.id", max_length=LIMIT
    )
    first, second, third, fourth = node.items
    assert first == Compare("~", Field(("owner", "email"), 0), Value("x'y"), 12)
    assert second.right == Value(-1.5)
    assert third.right == Value(None)
    assert fourth.right == AuthVar("id")


def test_an_empty_expression_is_none():
    assert parse("   ", max_length=LIMIT) is None


@pytest.mark.parametrize(
    ("text", "reason", "position"),
    [
        ("title = ", "unexpected end", None),
        ("title == 'x'", "unexpected", 7),
        ("title = 'open", "unexpected", 8),
        ("title = 1 &&", "unexpected", None),
        ("(title = 'x'", "unexpected end", None),
        ("title = @auth.name", "unknown @auth.name", 8),
        ("nope = 1", "unknown field 'nope'", 0),
        ("owner.password_hash = 'x'", "unknown field 'owner.password_hash'", 0),
        ("title = 5", "cannot compare text with number", 6),
        ("public > true", "> needs numbers, text or times", 7),
        ("tags = 'a'", "list fields only take ?=", 5),
        ("title ?= 'a'", "?= needs a list field", 6),
        ("n ~ 'a'", "~ compares text with text", 2),
        ("meta = null", "json fields cannot be compared", 5),
    ],
)
def test_bad_expressions_say_what_and_where(text, reason, position):
    with pytest.raises(ExpressionError) as caught:
        _parsed(text)
    assert reason in caught.value.reason
    if position is not None:
        assert caught.value.position == position


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"]
)
def test_a_time_literal_must_have_an_offset_and_fit_in_utc(when):
    # Each once reached the driver as an OverflowError (or a naive/aware TypeError): a 500.
    with pytest.raises(ExpressionError, match="is not a valid datetime"):
        coerce(when, "datetime", 13)
    assert coerce("2026-01-01T02:00:00+02:00", "datetime", 0) == datetime(2026, 1, 1, tzinfo=UTC)


def test_deep_nesting_and_huge_expressions_are_refused_not_crashed():
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse("(" * 1000 + "n = 1" + ")" * 1000, max_length=100_000)
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse("!" * 5000 + "n = 1", max_length=100_000)
    with pytest.raises(ExpressionError, match="longer than"):
        parse("n = 1 || " * 20_000 + "n = 1", max_length=LIMIT)
    assert parse("(" * MAX_NESTING + "n = 1" + ")" * MAX_NESTING, max_length=LIMIT)


def test_bad_literals_for_typed_fields_are_refused():
    now = datetime.now(UTC)
    for text, reason in (
        ("owner = 'not-a-uuid'", "not a valid uuid"),
        ("created_at > '2026-01-01'", "UTC offset"),
    ):
        with pytest.raises(ExpressionError, match=reason):
            to_predicate(_parsed(text), Fields(), AuthContext(), now)


ME = uuid4()


@pytest.mark.parametrize(
    ("rule", "record", "auth", "admitted"),
    [
        (
            "owner = @auth.id || public = true",
            {"owner": ME, "public": False},
            AuthContext(id=ME),
            True,
        ),
        (
            "owner = @auth.id || public = true",
            {"owner": uuid4(), "public": False},
            AuthContext(id=ME),
            False,
        ),
        (
            "owner = @auth.id || public = true",
            {"owner": uuid4(), "public": True},
            AuthContext(),
            True,
        ),
        # A null @auth.* compares FALSE with anything but the literal null (issue 18.1).
        ("owner = @auth.id", {"owner": None}, AuthContext(), False),
        ("owner != @auth.id", {"owner": ME}, AuthContext(), False),
        ("owner = @auth.org", {"owner": None}, AuthContext(id=ME), False),
        ("@auth.id = null", {}, AuthContext(), True),
        ("owner = null", {"owner": None}, AuthContext(), True),  # null-safe = between the rest
        ("@auth.id != null", {}, AuthContext(), False),
        ("@auth.id != null", {}, AuthContext(id=ME), True),
        # @auth.anonymous: a user made by grant_type anonymous, false for everyone else
        # signed in, null (so never a match) for a caller who is not signed in.
        ("@auth.anonymous = false", {}, AuthContext(id=ME, anonymous=False), True),
        ("@auth.anonymous = false", {}, AuthContext(id=ME, anonymous=True), False),
        ("@auth.anonymous = false", {}, AuthContext(), False),
        ("@auth.anonymous != true", {}, AuthContext(), False),
        ("@auth.anonymous = true", {}, AuthContext(id=ME, anonymous=True), True),
        ("public = @auth.anonymous", {"public": True}, AuthContext(id=ME, anonymous=True), True),
        ("public = @auth.anonymous", {"public": True}, AuthContext(id=ME, anonymous=False), False),
        ("n > 1", {"n": None}, AuthContext(), False),
        ("!(n > 1)", {"n": None}, AuthContext(), True),  # two-valued: no NULL leaks through !
        ("title ~ 'DRAFT'", {"title": "my draft note"}, AuthContext(), True),
        ("title !~ 'draft'", {"title": None}, AuthContext(), True),
        ("tags ?= 'x'", {"tags": ["a", "x"]}, AuthContext(), True),
        ("tags ?= 'x'", {"tags": None}, AuthContext(), False),
        (
            "created_at < @now",
            {"created_at": datetime(2020, 1, 1, tzinfo=UTC)},
            AuthContext(),
            True,
        ),
        (
            "owner = '00000000-0000-0000-0000-000000000001'",
            {"owner": UUID(int=1)},
            AuthContext(),
            True,
        ),
        ("owner.email ~ '@example.com'", {"owner.email": "ada@example.com"}, AuthContext(), True),
    ],
)
def test_the_python_predicate(rule, record, auth, admitted):
    predicate = to_predicate(_parsed(rule), Fields(), auth, datetime.now(UTC))
    assert predicate(record) is admitted
