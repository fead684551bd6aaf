"""One paging shape for every list route outside collections (decision 0014): ``?limit=``
(PAGE_DEFAULT_LIMIT when absent, at most PAGE_MAX_LIMIT) and an opaque ``?cursor=`` in,
``Page[T]`` (``{items, next_cursor}``) out; the ``paging`` dependency reads the query and the
helpers bound a statement or a list to one page.

A cursor is base64url JSON: ``{"after": [...]}`` (keyset: the last row's sort key) where the
query orders by a unique key, ``{"offset": n}`` otherwise. ``?offset=`` is still read, for
clients written before the cursor; with a cursor it skips that many more rows past the cursor's
position, so the two never conflict (any values the document allows are a valid request)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar, TypeVarTuple

import msgspec
from litestar.params import Parameter
from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from backend.config import Settings
from backend.errors import Invalid, invalid_field

MAX_OFFSET = 2**63 - 1  # Postgres' bigint: past it OFFSET is an error, not an empty page
MAX_CURSOR_LENGTH = 1000

T = TypeVar("T")
U = TypeVar("U")
Row = TypeVar("Row")
Columns = TypeVarTuple("Columns")
# What a keyset cursor may hold: a sort key's values, as JSON carries them.
KeyValue = str | int | bool | None


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a list: ``next_cursor`` asks for the next, null on the last page."""

    items: list[T]
    next_cursor: str | None

    def map(self, view: Callable[[T], U]) -> Page[U]:
        return Page(items=[view(item) for item in self.items], next_cursor=self.next_cursor)


class _Cursor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_OFFSET)] | None = None
    after: Annotated[list[KeyValue], msgspec.Meta(min_length=1, max_length=8)] | None = None


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int = 0
    after: tuple[KeyValue, ...] | None = None  # a keyset cursor's values, not yet typed


def encode_cursor(value: Any) -> str:
    """A cursor's text: ``value`` as base64url JSON, unpadded (records' cursors too)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(value)).decode().rstrip("=")


def decode_cursor(text: str, kind: type[T]) -> T:
    """What ``encode_cursor`` wrote, as ``kind``; ValueError (binascii's included) or
    msgspec.DecodeError when it is not."""
    return msgspec.json.decode(base64.urlsafe_b64decode(text.encode() + b"=="), type=kind)


def _bad_cursor() -> Invalid:
    return invalid_field(
        "The cursor is not valid for this list; start again without it",
        "cursor",
        "invalid",
        "query",
    )


def _decode(text: str) -> _Cursor:
    try:
        cursor = decode_cursor(text, _Cursor)
    except (ValueError, msgspec.DecodeError):
        raise _bad_cursor() from None
    if (cursor.offset is None) == (cursor.after is None):
        raise _bad_cursor()
    return cursor


def _limit(settings: Settings) -> Any:
    return Annotated[
        int | None,
        Parameter(
            ge=1,
            le=settings.page_max_limit,
            required=False,
            description="Rows to return: PAGE_DEFAULT_LIMIT when absent, at most PAGE_MAX_LIMIT",
        ),
    ]


def paging_provider(settings: Settings) -> Callable[..., Paging]:
    """The ``paging`` dependency of an app with these settings: its ``limit`` states
    PAGE_MAX_LIMIT in the OpenAPI document, as the server enforces it."""

    def provide_paging(
        limit: Any = None,
        cursor: Annotated[
            str | None,
            Parameter(
                required=False,
                max_length=MAX_CURSOR_LENGTH,
                description="The previous page's `next_cursor`; absent for the first page",
            ),
        ] = None,
        offset: Annotated[
            int | None,
            Parameter(
                ge=0,
                schema_extra={"minimum": 0},  # Litestar leaves a bound of 0 out of the document
                le=MAX_OFFSET,
                required=False,
                description="Rows to skip, past the cursor's position when one is given (kept"
                " for older clients; follow `next_cursor` instead)",
            ),
        ] = None,
    ) -> Paging:
        return page_request(settings, limit, cursor, offset)

    # The bound is this app's setting, so the annotation is made here (Litestar reads it).
    provide_paging.__annotations__["limit"] = _limit(settings)
    return provide_paging


def page_request(
    settings: Settings, limit: int | None, cursor: str | None, offset: int | None
) -> Paging:
    """Which page ``?limit=&cursor=&offset=`` ask for."""
    limit = settings.page_default_limit if limit is None else limit
    skip = offset or 0
    if cursor is None:
        return Paging(limit, skip)
    decoded = _decode(cursor)
    if decoded.after is not None:
        return Paging(limit, skip, after=tuple(decoded.after))
    # Past bigint's end no row is left: the page is empty either way.
    return Paging(limit, min((decoded.offset or 0) + skip, MAX_OFFSET))


# --- one page of a statement -----------------------------------------------------------------


def by_offset(statement: Select[*Columns], paging: Paging) -> Select[*Columns]:
    """The page's rows of an ordered statement, and one more to tell whether a next exists."""
    return statement.offset(offset_of(paging)).limit(paging.limit + 1)


def offset_of(paging: Paging) -> int:
    """Where a list ordered by no unique key starts: a keyset cursor is not one of its own."""
    if paging.after is not None:
        raise _bad_cursor()
    return paging.offset


def by_key(
    statement: Select[*Columns],
    paging: Paging,
    *key: InstrumentedAttribute[Any],
    descending: bool = False,
) -> Select[*Columns]:
    """The page's rows ordered by ``key`` (unique, every column the same direction), after the
    cursor's key, and one more to tell whether a next page exists."""
    ordered = statement.order_by(*(column.desc() if descending else column for column in key))
    if paging.after is not None:
        row, after = tuple_(*key), _after(paging.after, key)
        ordered = ordered.where(row < after if descending else row > after)
    if paging.offset:
        ordered = ordered.offset(paging.offset)
    return ordered.limit(paging.limit + 1)


def _after(values: tuple[KeyValue, ...], key: Sequence[InstrumentedAttribute[Any]]) -> Any:
    """The cursor's values as the key's columns take them; a cursor is the client's text."""
    if len(values) != len(key):
        raise _bad_cursor()
    typed: list[Any] = []
    for value, column in zip(values, key, strict=True):
        kind: Any = column.type.python_type
        if kind is datetime:
            kind = Annotated[datetime, msgspec.Meta(tz=True)]
        elif kind is str and isinstance(value, str) and "\x00" in value:
            raise _bad_cursor()
        try:
            typed.append(msgspec.convert(value, kind))
        except msgspec.ValidationError:
            raise _bad_cursor() from None
    return tuple_(*typed, types=[column.type for column in key])


def page_by_offset(rows: Sequence[Row], paging: Paging) -> Page[Row]:
    """A page of what ``by_offset`` fetched (or of a whole list already in memory, sliced)."""
    items = list(rows[: paging.limit])
    more = len(rows) > paging.limit and paging.offset + paging.limit <= MAX_OFFSET
    following = encode_cursor(_Cursor(offset=paging.offset + paging.limit)) if more else None
    return Page(items=items, next_cursor=following)


def page_by_key(
    rows: Sequence[Row], paging: Paging, key_of: Callable[[Row], Sequence[Any]]
) -> Page[Row]:
    """A page of what ``by_key`` fetched; the cursor holds the last row's key."""
    items = list(rows[: paging.limit])
    if len(rows) <= paging.limit:
        return Page(items=items, next_cursor=None)
    after = msgspec.to_builtins(list(key_of(items[-1])))
    return Page(items=items, next_cursor=encode_cursor(_Cursor(after=after)))


def page_of_list(items: Sequence[T], paging: Paging) -> Page[T]:
    """One page of a list the route holds whole (a few dozen items, read from files or settings)."""
    start = offset_of(paging)
    return page_by_offset(items[start : start + paging.limit + 1], paging)
