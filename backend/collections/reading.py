"""Reading records: lists (filter, sort, keyset cursor, fields) and single records under
the view rule, and the records a list expands, through the asyncpg reader."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Select,
    Uuid,
    and_,
    any_,
    bindparam,
    cast,
    func,
    or_,
    select,
    true,
)

from backend.collections.expressions import (
    ExpressionError,
    coerce,
)
from backend.collections.reads import Reader
from backend.collections.rules import CompiledRules, auth_context, rule_clause
from backend.collections.spec import Collection, CollectionModel
from backend.config import Settings
from backend.errors import Forbidden, Invalid, NotFound
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.paging import decode_cursor, encode_cursor

SORTABLE_KINDS = frozenset({"text", "integer", "number", "bool", "uuid", "datetime"})


def _field_problem(detail: str, field: str, message: str, **extra: Any) -> Invalid:
    """An ``Invalid`` naming one query parameter."""
    return Invalid(
        detail, errors=[{"field": field, "message": message, "source": "query"}], **extra
    )


Row = Mapping[str, Any]


def etag_of(row: Row | asyncpg.Record) -> str:
    return f'"{int(row["updated_at"].timestamp() * 1_000_000)}"'


@dataclass(frozen=True)
class ListQuery:
    filter: str | None = None
    sort: str | None = None
    limit: int = 50
    cursor: str | None = None
    fields: str | None = None
    count: bool = False


@dataclass(frozen=True)
class Page:
    rows: Sequence[Row | asyncpg.Record]  # records straight from the reader when kept shapes ran
    next_cursor: str | None
    total: int | None
    fields: tuple[str, ...] | None


def values_of(collection: Collection, row: CollectionModel) -> Row:
    return {name: getattr(row, name) for name in collection.fields}


def _fits(value: Any, kind: str) -> bool:
    """Whether a cursor's value can stand for a sort field of ``kind`` in SQL. A cursor is the
    client's text: anything else (a number for a time, a NUL in text) failed in the driver."""
    if kind == "text":
        return isinstance(value, str) and "\x00" not in value
    if kind == "integer":
        return type(value) is int and -(2**63) <= value < 2**63
    if kind == "number":
        return type(value) in (int, float) and math.isfinite(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "uuid":
        return isinstance(value, UUID)
    if kind == "datetime":
        return isinstance(value, datetime)
    return False


class RecordReads:
    """Rules, filters, GET and list: what reading needs, with no ORM session (reads run on
    the asyncpg reader), so the read routes neither open nor commit one."""

    def __init__(
        self,
        reader: Reader,
        settings: Settings,
        clock: Clock,
        rules: dict[str, CompiledRules],
    ) -> None:
        self.reader = reader
        self.settings = settings
        self.clock = clock
        self.rules = rules

    # --- rules -----------------------------------------------------------------------------

    auth_context = staticmethod(auth_context)

    def rule(
        self, collection: Collection, action: str, principal: Principal | None
    ) -> ColumnElement[bool]:
        return rule_clause(self.rules[collection.name], action, principal, self.clock.now())

    def filter_clause(
        self, collection: Collection, text: str | None, principal: Principal | None
    ) -> ColumnElement[bool]:
        if not text:
            return true()
        try:
            return self.rules[collection.name].filter_clause(
                text, self.auth_context(principal), self.clock.now()
            )
        except ExpressionError as exc:
            raise _field_problem(
                f"The filter is not valid: {exc}",
                "filter",
                exc.reason,
                position=exc.position,
            ) from None

    # --- reading ---------------------------------------------------------------------------

    def _sort_keys(self, collection: Collection, sort: str | None) -> list[tuple[str, bool]]:
        keys: list[tuple[str, bool]] = []
        for raw in (sort or "-created_at").split(","):
            name = raw.strip()
            descending = name.startswith("-")
            name = name.lstrip("+-")
            spec = collection.fields.get(name)
            if spec is None:
                raise _field_problem(f"Cannot sort by {name!r}", "sort", "unknown field")
            if spec.kind not in SORTABLE_KINDS or spec.nullable:
                raise _field_problem(
                    f"Cannot sort by {name!r}: only non-null text, numbers, booleans, ids, times",
                    "sort",
                    "not sortable",
                )
            if name != "id":
                keys.append((name, descending))
        # The id breaks ties, so the order (and the cursor) is total.
        keys.append(("id", keys[-1][1] if keys else True))
        return keys

    def _decode_cursor(
        self, collection: Collection, cursor: str, keys: list[tuple[str, bool]]
    ) -> list[Any]:
        try:
            raw = decode_cursor(cursor, object)
            if not isinstance(raw, list) or len(raw) != len(keys):
                raise ValueError("wrong shape")
            values = []
            for value, (name, _) in zip(raw, keys, strict=True):
                kind = collection.fields[name].kind
                values.append(coerce(value, kind, 0))
                if not _fits(values[-1], kind):
                    raise ValueError(f"not a {kind}")
            return values
        except (ValueError, msgspec.DecodeError, ExpressionError):
            raise _field_problem(
                "The cursor is not valid for this sort; start again without it",
                "cursor",
                "invalid",
            ) from None

    @staticmethod
    def _encode_cursor(row: Row | asyncpg.Record, keys: list[tuple[str, bool]]) -> str:
        return encode_cursor([row[name] for name, _ in keys])

    @staticmethod
    def _after(
        collection: Collection, keys: list[tuple[str, bool]], values: list[Any]
    ) -> ColumnElement[bool]:
        columns = [collection.table.c[name] for name, _ in keys]
        clauses = []
        for i, ((_, descending), column) in enumerate(zip(keys, columns, strict=True)):
            equal_before = [columns[j] == values[j] for j in range(i)]
            beyond = column < values[i] if descending else column > values[i]
            clauses.append(and_(*equal_before, beyond))
        return or_(*clauses)

    def _projection(self, collection: Collection, fields: str | None) -> tuple[str, ...] | None:
        if not fields:
            return None
        names = tuple(name.strip() for name in fields.split(",") if name.strip())
        unknown = [name for name in names if name not in collection.fields]
        if unknown:
            raise _field_problem(f"Unknown fields: {', '.join(unknown)}", "fields", "unknown")
        return names

    async def list_page(
        self, collection: Collection, principal: Principal | None, query: ListQuery
    ) -> Page:
        if "list" in self.rules[collection.name].admin_only and not (
            principal is not None and principal.bypasses_rules
        ):
            raise Forbidden(f"Only admins may list {collection.name}", code="forbidden")
        if not 1 <= query.limit <= self.settings.page_max_limit:
            raise _field_problem(
                f"limit must be between 1 and {self.settings.page_max_limit}",
                "limit",
                "out of range",
            )
        table = collection.table
        rule = self.rule(collection, "list", principal)
        # Checks the filter (422) and keeps its clause; the WHERE itself is built only when a
        # statement is (and_() of two clauses costs ~40 us, on every request, for nothing).
        filter_clause = self.filter_clause(collection, query.filter, principal)
        keys = self._sort_keys(collection, query.sort)
        fields = self._projection(collection, query.fields)
        after = self._decode_cursor(collection, query.cursor, keys) if query.cursor else None

        def page(values: list[Any] | None) -> Select[Any]:
            statement = select(table).where(and_(rule, filter_clause))
            if values is not None:
                statement = statement.where(self._after(collection, keys, values))
            order = [table.c[name].desc() if desc else table.c[name].asc() for name, desc in keys]
            return statement.order_by(*order).limit(query.limit + 1)

        key = self._list_key(collection, principal, query, keys)
        rows: Sequence[Row | asyncpg.Record]
        if key is None:
            rows = await self.reader.rows(page(after))
        elif after is None:
            rows = await self.reader.shaped_records(self.reader.shape(key, lambda: page(None), []))
        else:
            # The cursor's values are bound per run: one shape serves every page.
            names = [f"after_{i}" for i in range(len(keys))]

            def page_after() -> Select[Any]:
                return page(
                    [
                        bindparam(n, type_=table.c[k].type)
                        for n, (k, _) in zip(names, keys, strict=True)
                    ]
                )

            shape = self.reader.shape(key, page_after, names)
            rows = await self.reader.shaped_records(shape, **dict(zip(names, after, strict=True)))
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            next_cursor = self._encode_cursor(rows[-1], keys)
        total = None
        if query.count:
            where = and_(rule, filter_clause)
            total = int(
                await self.reader.scalar(select(func.count()).select_from(table).where(where)) or 0
            )
        return Page(rows=rows, next_cursor=next_cursor, total=total, fields=fields)

    def _list_key(
        self,
        collection: Collection,
        principal: Principal | None,
        query: ListQuery,
        keys: list[tuple[str, bool]],
    ) -> tuple[Any, ...] | None:
        """What a page's statement depends on (but the cursor's values), or None when its
        rule or filter is built per request."""
        where = self.list_where_key(collection, principal, query.filter)
        if where is None:
            return None
        return ("list", *where, tuple(keys), query.limit, bool(query.cursor))

    def list_where_key(
        self, collection: Collection, principal: Principal | None, filter_: str | None
    ) -> tuple[Any, ...] | None:
        """What the list rule and ``filter_`` (once ``filter_clause`` has built it) compile to
        depends on, for keeping statements that use them; None when built per request."""
        rule_key = self._rule_key(collection, "list", principal)
        if rule_key is None:
            return None
        if filter_ and not self.rules[collection.name].keeps_filter(
            filter_, self.auth_context(principal)
        ):
            return None
        return (*rule_key, filter_)

    def _rule_key(
        self, collection: Collection, action: str, principal: Principal | None
    ) -> tuple[Any, ...] | None:
        """What ``rule()``'s clause depends on, or None when it is built per request (@now)."""
        if principal is not None and principal.bypasses_rules:
            return (collection.name, action, "everything")
        compiled = self.rules[collection.name]
        if action in compiled.admin_only:
            return (collection.name, action, "nothing")
        if action not in compiled.timeless:
            return None
        return (collection.name, action, self.auth_context(principal))

    async def get(
        self, collection: Collection, principal: Principal | None, record_id: UUID
    ) -> Row | asyncpg.Record:
        table = collection.table
        key = self._rule_key(collection, "view", principal)
        rows: Sequence[Row | asyncpg.Record]
        if key is None:
            rows = await self.reader.rows(
                select(table).where(
                    table.c.id == record_id, self.rule(collection, "view", principal)
                )
            )
        else:
            shape = self.reader.shape(
                ("get", *key),
                lambda: select(table).where(
                    table.c.id == bindparam("record_id"), self.rule(collection, "view", principal)
                ),
                ["record_id"],
            )
            rows = await self.reader.shaped_records(shape, record_id=record_id)
        if not rows:
            raise NotFound(f"No such record in {collection.name}", code="not_found")
        return rows[0]

    async def related(
        self,
        principal: Principal | None,
        rows: Sequence[Row | asyncpg.Record],
        expand: dict[str, Collection],
    ) -> dict[str, dict[Any, Row | asyncpg.Record]]:
        """For each relation field in ``expand`` (field → the collection it points at), the
        records these rows point at that the caller may view, by id: one query per field,
        under the target's view rule, so an expanded record is never more than a GET shows."""
        found: dict[str, dict[Any, Row | asyncpg.Record]] = {}
        for field, target in expand.items():
            ids = list({row[field] for row in rows if row[field] is not None})
            found[field] = {}
            if ids:
                table = target.table
                # = ANY(array): one parameter (the reader's compiled SQL has no expanding IN).
                match = table.c.id == any_(cast(ids, ARRAY(Uuid())))
                statement = select(table).where(match, self.rule(target, "view", principal))
                found[field] = {row["id"]: row for row in await self.reader.rows(statement)}
        return found
