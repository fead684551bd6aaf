"""Two compilers for one expression: to a SQL WHERE clause, and to a Python predicate.

They share the comparison semantics of ``expressions`` (null-safe ``=``/``!=``, two-valued
everything else), and a property test holds them to agreeing on random records.

One exception to null-safety: an ``@auth.*`` operand that is null (an anonymous caller, a
caller in no org) makes its comparison FALSE, unless it is compared with the literal ``null``.
``owner = @auth.id`` must never admit an anonymous caller to the rows no one owns (a deleted
account's, an admin's), nor ``org = @auth.org`` an org-less caller to org-less rows.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import ColumnElement, and_, any_, false, func, literal, not_, or_, true
from sqlalchemy.types import TypeEngine

from backend.collections.expressions import (
    And,
    AuthVar,
    Compare,
    Field,
    FieldTypes,
    Kind,
    Node,
    Not,
    Now,
    Operand,
    Or,
    Value,
    coerce,
    kind_of,
)

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ORDER = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class AuthContext:
    """What ``@auth.*`` stands for: the caller, or all None when anonymous."""

    id: UUID | None = None
    role: str | None = None
    org: UUID | None = None
    anonymous: bool | None = None  # a user made by grant_type anonymous

    def value(self, name: str) -> Any:
        return getattr(self, name)


def _fold(text: str) -> str:
    # Case-insensitive as Postgres' ILIKE is in the C locale: ASCII letters only.
    return text.translate(_ASCII_LOWER)


def compare_values(op: str, left: Any, right: Any) -> bool:
    """The one definition of every operator, on Python values (None is null)."""
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "!~":
        return not compare_values("~", left, right)
    if left is None or right is None:
        return False
    if op == "~":
        return _fold(right) in _fold(left)
    if op == "?=":
        return right in left
    return bool(_ORDER[op](left, right))


# The LIKE escape character: not a backslash, which SQLAlchemy before 2.1 doubles when a
# statement is compiled with its values inline, an invalid escape string to Postgres.
_LIKE_ESCAPE = "!"


def _escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


class SqlFields(FieldTypes, Protocol):
    def column(self, path: tuple[str, ...]) -> ColumnElement[Any]:
        """The SQL expression for a field or a relation path."""

    def sql_type(self, path: tuple[str, ...]) -> TypeEngine[Any]:
        """The column type, used to bind literals compared with it."""


@dataclass(frozen=True)
class _Side:
    """One side of a comparison: a field (with its path) or a constant Python value."""

    kind: Kind | None
    path: tuple[str, ...] | None = None
    value: Any = None
    unknown_caller: bool = False  # an @auth.* operand that is null
    null_literal: bool = False  # the literal ``null``


def _sides(
    node: Compare, fields: FieldTypes, auth: AuthContext, now: datetime
) -> tuple[_Side, _Side]:
    def side(operand: Operand, other_kind: Kind | None) -> _Side:
        kind = kind_of(operand, fields)
        match operand:
            case Field(path=path):
                return _Side(kind, path=path)
            case AuthVar(name=name):
                value = auth.value(name)
                return _Side(kind, value=value, unknown_caller=value is None)
            case Now():
                return _Side(kind, value=now)
            case Value(value=value):
                return _Side(
                    other_kind or kind,
                    value=coerce(value, other_kind, node.position),
                    null_literal=value is None,
                )
        raise AssertionError(operand)

    left_kind, right_kind = kind_of(node.left, fields), kind_of(node.right, fields)
    return side(node.left, right_kind), side(node.right, left_kind)


def _unknown_caller(left: _Side, right: _Side) -> bool:
    """A null ``@auth.*`` compared with anything but the literal null: the comparison is FALSE."""
    return (left.unknown_caller and not right.null_literal) or (
        right.unknown_caller and not left.null_literal
    )


# --- to SQL ------------------------------------------------------------------------------


def to_sql(
    node: Node | None, fields: SqlFields, auth: AuthContext, now: datetime
) -> ColumnElement[bool]:
    """A parameterized WHERE clause; an empty expression admits everything."""
    if node is None:
        return true()
    match node:
        case And(items=items):
            return and_(*(to_sql(item, fields, auth, now) for item in items))
        case Or(items=items):
            return or_(*(to_sql(item, fields, auth, now) for item in items))
        case Not(item=item):
            return not_(to_sql(item, fields, auth, now))
        case Compare():
            return _compare_sql(node, fields, auth, now)
    raise AssertionError(node)


def _compare_sql(
    node: Compare, fields: SqlFields, auth: AuthContext, now: datetime
) -> ColumnElement[bool]:
    left, right = _sides(node, fields, auth, now)
    if _unknown_caller(left, right):
        return false()
    if left.path is None and right.path is None:
        return true() if compare_values(node.op, left.value, right.value) else false()

    def expression(side: _Side, other: _Side) -> ColumnElement[Any]:
        if side.path is not None:
            return fields.column(side.path)
        # uuids and times bind with the column's type; numbers and text infer their own
        # (an integer column compares fine with 1.5 bound as a float).
        typed = other.path is not None and other.kind in ("uuid", "datetime")
        type_ = fields.sql_type(other.path) if typed and other.path is not None else None
        return literal(side.value, type_=None if side.value is None else type_)

    lhs, rhs = expression(left, right), expression(right, left)
    op = node.op
    # A field against a known value compiles to plain, NULL-safe comparisons the planner can
    # estimate and index (`owner IS NOT NULL AND owner = $1`), never to coalesce(...) or
    # IS [NOT] DISTINCT FROM, which hide the column from statistics and btree indexes.
    if (left.path is None) != (right.path is None):
        column = lhs if left.path is not None else rhs
        value = right.value if right.path is None else left.value
        if op == "=":
            return column.is_(None) if value is None else and_(column.is_not(None), lhs == rhs)
        if op == "!=":
            return column.is_not(None) if value is None else or_(column.is_(None), lhs != rhs)
        if op in _ORDER:
            return false() if value is None else and_(column.is_not(None), _ORDER[op](lhs, rhs))
        if op in ("~", "!~") and right.path is None:
            if value is None:
                contains: ColumnElement[bool] = false()
            else:
                pattern = f"%{_escape_like(str(value))}%"
                contains = and_(lhs.is_not(None), lhs.ilike(literal(pattern), escape=_LIKE_ESCAPE))
            return contains if op == "~" else not_(contains)
    if op == "=":
        return lhs.is_not_distinct_from(rhs)
    if op == "!=":
        return lhs.is_distinct_from(rhs)
    if op in ("~", "!~"):
        contains = func.coalesce(func.strpos(func.lower(lhs), func.lower(rhs)) > 0, false())
        return contains if op == "~" else not_(contains)
    if op == "?=":
        return func.coalesce(rhs == any_(lhs), false())
    return func.coalesce(_ORDER[op](lhs, rhs), false())


# --- to Python -----------------------------------------------------------------------------


def to_predicate(
    node: Node | None, fields: FieldTypes, auth: AuthContext, now: datetime
) -> Predicate:
    """A function of a record (field name or relation path → Python value) → admitted?"""
    if node is None:
        return lambda record: True
    match node:
        case And(items=items):
            parts = [to_predicate(item, fields, auth, now) for item in items]
            return lambda record: all(part(record) for part in parts)
        case Or(items=items):
            parts = [to_predicate(item, fields, auth, now) for item in items]
            return lambda record: any(part(record) for part in parts)
        case Not(item=item):
            inner = to_predicate(item, fields, auth, now)
            return lambda record: not inner(record)
        case Compare(op=op):
            left, right = _sides(node, fields, auth, now)
            if _unknown_caller(left, right):
                return lambda record: False

            def value(side: _Side, record: Record) -> Any:
                return record.get(".".join(side.path)) if side.path is not None else side.value

            if left.path is None and right.path is None:
                constant = compare_values(op, left.value, right.value)
                return lambda record: constant
            return lambda record: compare_values(op, value(left, record), value(right, record))
    raise AssertionError(node)
