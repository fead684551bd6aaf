"""The rule and filter language: one grammar (lark), checked against a collection's fields.

    owner = @auth.id || (public = true && title ~ "draft")

Operators: ``= != > >= < <= ~ !~ ?=``, ``&& || !`` and parentheses; literals are strings,
numbers, ``true false null``; operands are fields (``title``, one relation hop such as
``owner.email``), ``@auth.id @auth.role @auth.org @auth.anonymous`` and ``@now``.

Semantics, shared by both compilers (SQL and Python) so they always agree:
- ``=`` and ``!=`` are null-safe (``IS NOT DISTINCT FROM``): ``owner = null`` works.
- ``> >= < <=``, ``~`` (contains, case-insensitive), ``?=`` (a list field holds the value) are
  false when either side is null, and stay false under ``!`` (two-valued logic, no SQL NULLs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

from lark import Lark, Token, Transformer, UnexpectedInput, v_args
from lark.exceptions import UnexpectedEOF, UnexpectedToken, VisitError

from backend.lib.clock import as_utc

Kind = Literal["text", "integer", "number", "bool", "uuid", "datetime", "text_list", "json"]
ORDERED_KINDS = frozenset({"text", "integer", "number", "datetime"})
NUMERIC_KINDS = frozenset({"integer", "number"})
AUTH_KINDS: dict[str, Kind] = {"id": "uuid", "org": "uuid", "role": "text", "anonymous": "bool"}

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr ("||" and_expr)*
?and_expr: not_expr ("&&" not_expr)*
?not_expr: "!" not_expr -> negate
         | atom
?atom: comparison
     | "(" or_expr ")"
comparison: operand OP operand
?operand: FIELD -> field
        | AUTH -> auth
        | NOW -> now
        | STRING -> string
        | NUMBER -> number
        | "true" -> true
        | "false" -> false
        | "null" -> null
OP: "!=" | ">=" | "<=" | "!~" | "?=" | "=" | ">" | "<" | "~"
AUTH.2: /@auth\.[a-z]+/
NOW.2: "@now"
FIELD: /[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)?/
STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
NUMBER: /-?\d+(\.\d+)?/
%import common.WS
%ignore WS
"""

_parser = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

MAX_NESTING = 64


class ExpressionError(ValueError):
    """An expression that does not parse or does not fit the collection; says where and why."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} (at position {position})")
        self.reason = message
        self.position = position


# --- the syntax tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    position: int

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class AuthVar:
    name: str  # id, role, org, anonymous


@dataclass(frozen=True)
class Now:
    pass


@dataclass(frozen=True)
class Value:
    value: str | int | float | bool | None


Operand = Field | AuthVar | Now | Value


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand
    position: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Compare | And | Or | Not


def _unquote(token: str) -> str:
    body = token[1:-1]
    out, escaped = [], False
    for char in body:
        if escaped:
            out.append({"n": "\n", "t": "\t"}.get(char, char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


@v_args(inline=True)
class _ToTree(Transformer[Token, Node]):
    def field(self, token: Token) -> Field:
        return Field(tuple(str(token).split(".")), (token.start_pos or 0))

    def auth(self, token: Token) -> AuthVar:
        name = str(token).removeprefix("@auth.")
        if name not in AUTH_KINDS:
            raise ExpressionError(
                f"unknown @auth.{name}; use @auth.id, @auth.role, @auth.org or @auth.anonymous",
                token.start_pos,
            )
        return AuthVar(name)

    def now(self, _token: Token) -> Now:
        return Now()

    def string(self, token: Token) -> Value:
        return Value(_unquote(str(token)))

    def number(self, token: Token) -> Value:
        text = str(token)
        return Value(float(text) if "." in text else int(text))

    def true(self) -> Value:
        return Value(True)

    def false(self) -> Value:
        return Value(False)

    def null(self) -> Value:
        return Value(None)

    def comparison(self, left: Operand, op: Token, right: Operand) -> Compare:
        return Compare(str(op), left, right, op.start_pos or 0)

    def negate(self, item: Node) -> Not:
        return Not(item)

    def and_expr(self, *items: Node) -> And:
        return And(items)

    def or_expr(self, *items: Node) -> Or:
        return Or(items)


def _check_nesting(text: str) -> None:
    """Refuse deep parentheses before parsing: the tree walkers are recursive."""
    depth, quote, escaped = 0, "", False
    for position, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise ExpressionError(f"nested deeper than {MAX_NESTING} levels", position)
        elif char == ")":
            depth -= 1


def _depth(node: Node) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(current, And | Or):
            stack.extend((item, depth + 1) for item in current.items)
        elif isinstance(current, Not):
            stack.append((current.item, depth + 1))
    return deepest


def fields_read(node: Node | None) -> list[Field]:
    """Every field the expression reads, in the order written."""
    found: list[Field] = []
    stack: list[Node] = [] if node is None else [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack.extend(reversed(current.items))
        elif isinstance(current, Not):
            stack.append(current.item)
        else:
            found += [o for o in (current.left, current.right) if isinstance(o, Field)]
    return found


def check_client_filter(node: Node | None) -> None:
    """A caller's own filter (REST, search, realtime) may read a relation's ``id`` only.

    Rules may read ``owner.email``; a client filter that could would let anyone learn the
    email (or name) of the owner of every row they can list, a character at a time."""
    for field in fields_read(node):
        if len(field.path) > 1 and field.path[-1] != "id":
            raise ExpressionError(
                f"filters may read only {field.path[0]}.id through a relation, not {field.name}",
                field.position,
            )


def parse(text: str, *, max_length: int) -> Node | None:
    """Parse an expression; None for an empty one. Raises ExpressionError."""
    if len(text) > max_length:
        raise ExpressionError(f"longer than {max_length} characters")
    if not text.strip():
        return None
    _check_nesting(text)
    try:
        tree = _parser.parse(text)
    except UnexpectedInput as exc:
        raise ExpressionError(*_describe(exc, text)) from None
    try:
        result: Node = _ToTree().transform(tree)
    except RecursionError:
        raise ExpressionError(f"nested deeper than {MAX_NESTING} levels") from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, ExpressionError):
            raise exc.orig_exc from None
        raise
    if _depth(result) > MAX_NESTING * 2:
        raise ExpressionError(f"nested deeper than {MAX_NESTING} levels")
    return result


def _describe(exc: UnexpectedInput, text: str) -> tuple[str, int]:
    if (isinstance(exc, UnexpectedToken) and exc.token.type == "$END") or isinstance(
        exc, UnexpectedEOF
    ):
        return "unexpected end of expression", len(text)
    position = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
    return f"unexpected {text[position : position + 10]!r}", position


# --- checking against a collection -----------------------------------------------------


class FieldTypes(Protocol):
    def kind_of(self, path: tuple[str, ...]) -> Kind | None:
        """The kind of a field or relation path, or None if there is no such (visible) one."""


def kind_of(operand: Operand, fields: FieldTypes) -> Kind | None:
    """The operand's kind; None for a null literal (it fits any kind)."""
    match operand:
        case Field(path=path, position=position):
            kind = fields.kind_of(path)
            if kind is None:
                raise ExpressionError(f"unknown field {'.'.join(path)!r}", position)
            return kind
        case AuthVar(name=name):
            return AUTH_KINDS[name]
        case Now():
            return "datetime"
        case Value(value=None):
            return None
        case Value(value=bool()):
            return "bool"
        case Value(value=int() | float()):
            return "number"  # integer fields take numbers with a fraction too
        case Value(value=str()):
            return "text"
    raise AssertionError(operand)


def _compatible(left: Kind | None, right: Kind | None) -> bool:
    if left is None or right is None or left == right:
        return True
    if {left, right} <= NUMERIC_KINDS:
        return True
    # Strings stand for uuids and timestamps: "2026-01-01T00:00:00Z", "0193…".
    return {left, right} in ({"text", "uuid"}, {"text", "datetime"})


def check(node: Node, fields: FieldTypes) -> None:
    """Raise ExpressionError unless every field exists and every comparison makes sense."""
    match node:
        case And(items=items) | Or(items=items):
            for item in items:
                check(item, fields)
        case Not(item=item):
            check(item, fields)
        case Compare(op=op, left=left, right=right, position=position):
            lk, rk = kind_of(left, fields), kind_of(right, fields)
            if "json" in (lk, rk):
                raise ExpressionError("json fields cannot be compared", position)
            if op == "?=":
                if lk != "text_list":
                    raise ExpressionError("?= needs a list field on its left", position)
                if rk not in (None, "text"):
                    raise ExpressionError("?= needs a text value on its right", position)
                return
            if "text_list" in (lk, rk):
                raise ExpressionError(f"list fields only take ?=, not {op}", position)
            if op in ("~", "!~"):
                if lk != "text" or rk not in (None, "text"):
                    raise ExpressionError(f"{op} compares text with text", position)
                return
            if not _compatible(lk, rk):
                raise ExpressionError(f"cannot compare {lk} with {rk}", position)
            if op in (">", ">=", "<", "<=") and ({lk, rk} - {None}) - ORDERED_KINDS:
                raise ExpressionError(f"{op} needs numbers, text or times", position)


def coerce(value: Any, kind: Kind | None, position: int) -> Any:
    """Turn a literal into the Python value a field of ``kind`` holds."""
    if value is None or kind is None:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
        return float(value)  # beyond bigint: compare as a float rather than overflow
    try:
        if kind == "uuid" and isinstance(value, str):
            return UUID(value)
        if kind == "datetime" and isinstance(value, str):
            return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError as exc:
        raise ExpressionError(f"{value!r} is not a valid {kind}: {exc}", position) from None
    return value
