"""Records: list, read, create, update, delete and batch, under each collection's rules.

A row a caller may not view is 404 on view, update and delete (never 403, never a hint that
it exists); a row they may view but not change is 403. Rules and client filters compile to one
parameterized WHERE clause. Lists page with a keyset cursor, stable while rows are inserted.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

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
    coerce,
    parse,
)
from backend.collections.reads import Reader
from backend.collections.relations import relation_checks, unviewable_relations
from backend.collections.spec import Collection, CollectionModel
from backend.config import Settings
from backend.errors import DomainError, Forbidden, Invalid, NotFound, Stale
from backend.identity import Principal
from backend.lib.clock import Clock

log = logging.getLogger(__name__)

ACTIONS = ("list", "view", "create", "update", "delete")
SORTABLE_KINDS = frozenset({"text", "integer", "number", "bool", "uuid", "datetime"})


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
    return AuthContext(id=principal.user_id, role=principal.role, org=principal.org_id)


def rule_clause(
    compiled: CompiledRules, action: str, principal: Principal | None, now: datetime
) -> ColumnElement[bool]:
    """The WHERE clause of one rule for this caller (admins and service keys: every row; an
    admin-only rule: none for anyone else). Requests and workers read records through it."""
    if principal is not None and principal.bypasses_rules:
        return true()
    if action in compiled.admin_only:
        return false()
    return compiled.clause(action, auth_context(principal), now)


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
            raw = msgspec.json.decode(base64.urlsafe_b64decode(cursor.encode() + b"=="))
            if not isinstance(raw, list) or len(raw) != len(keys):
                raise ValueError("wrong shape")
            values = []
            for value, (name, _) in zip(raw, keys, strict=True):
                kind = collection.fields[name].kind
                values.append(coerce(value, kind, 0))
                if not _fits(values[-1], kind):
                    raise ValueError(f"not a {kind}")
            return values
        except (ValueError, binascii.Error, msgspec.DecodeError, ExpressionError):
            raise _field_problem(
                "The cursor is not valid for this sort; start again without it",
                "cursor",
                "invalid",
            ) from None

    @staticmethod
    def _encode_cursor(row: Row | asyncpg.Record, keys: list[tuple[str, bool]]) -> str:
        values = [row[name] for name, _ in keys]
        return base64.urlsafe_b64encode(msgspec.json.encode(values)).decode().rstrip("=")

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


class RecordService(RecordReads):
    """Reads, and the writes (create, update, delete, batch) through an ORM session."""

    def __init__(
        self,
        db: AsyncSession,
        reader: Reader,
        settings: Settings,
        clock: Clock,
        rules: dict[str, CompiledRules],
    ) -> None:
        super().__init__(reader, settings, clock, rules)
        self.db = db

    async def _visible(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        *,
        for_update: bool = False,
    ) -> CollectionModel:
        statement = select(collection.model).where(
            collection.table.c.id == record_id, self.rule(collection, "view", principal)
        )
        if for_update:
            statement = statement.with_for_update()
        row = await self.db.scalar(statement)
        if row is None:
            raise NotFound(f"No such record in {collection.name}", code="not_found")
        return row

    async def _admits(
        self, collection: Collection, action: str, principal: Principal | None, record_id: UUID
    ) -> bool:
        found = await self.db.scalar(
            select(collection.table.c.id).where(
                collection.table.c.id == record_id, self.rule(collection, action, principal)
            )
        )
        return found is not None

    # --- writing ---------------------------------------------------------------------------

    async def _check_relations(
        self,
        collection: Collection,
        principal: Principal | None,
        values: Mapping[str, Any],
        org: UUID | None,
    ) -> None:
        """422 if a written relation points at a record the caller may not view."""
        if principal is not None and principal.bypasses_rules:
            return
        checks = relation_checks(
            collection, self.rules, values, auth_context(principal), org, self.clock.now()
        )
        if checks:
            passed = (await self.db.execute(select(*checks.values()))).one()
            problem = unviewable_relations(checks, passed)
            if problem is not None:
                raise problem

    async def _create(
        self, collection: Collection, principal: Principal | None, data: dict[str, Any]
    ) -> CollectionModel:
        await self._check_relations(
            collection, principal, data, principal.org_id if principal else None
        )
        row = collection.model(
            **data,
            owner=principal.user_id if principal else None,
            org=principal.org_id if principal else None,
        )
        self.db.add(row)
        await self._flush(collection)
        await self.db.refresh(row)  # columns the database filled in (server defaults)
        if not await self._admits(collection, "create", principal, row.id):
            raise Forbidden(
                f"You may not create this record in {collection.name}", code="forbidden"
            )
        return row

    async def _update(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        changes: dict[str, Any],
        if_match: str | None,
    ) -> CollectionModel:
        row = await self._lock_to_change(collection, principal, record_id, "update", if_match)
        await self._check_relations(collection, principal, changes, row.org)
        for name, value in changes.items():
            setattr(row, name, value)
        # Strictly later than before, so the ETag changes with every update.
        row.updated_at = max(self.clock.now(), row.updated_at + timedelta(microseconds=1))
        await self._flush(collection)
        return row

    async def _delete(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        if_match: str | None,
    ) -> CollectionModel:
        row = await self._lock_to_change(collection, principal, record_id, "delete", if_match)
        await self.db.delete(row)
        await self._flush(collection)
        return row

    async def _lock_to_change(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        action: str,
        if_match: str | None,
    ) -> CollectionModel:
        """The row, locked: 404 if hidden, 403 if the rule for ``action`` refuses, 412 if stale."""
        row = await self._visible(collection, principal, record_id, for_update=True)
        if not await self._admits(collection, action, principal, record_id):
            raise Forbidden(
                f"You may not {action} this record in {collection.name}", code="forbidden"
            )
        self._check_precondition(collection, row, if_match)
        return row

    @staticmethod
    def _check_precondition(
        collection: Collection, row: CollectionModel, if_match: str | None
    ) -> None:
        etag = etag_of(values_of(collection, row))
        if if_match is not None and if_match.strip() not in ("*", etag):
            raise Stale(
                "The record changed since you read it (If-Match does not match its ETag)",
                code="precondition_failed",
                headers={"ETag": etag},
            )

    async def _flush(self, collection: Collection) -> None:
        try:
            await self.db.flush()
        except IntegrityError as exc:
            raise self._integrity_problem(collection, exc) from None
        except DBAPIError as exc:
            # The database's own words (types, values, internals) go to the log, not the caller.
            log.warning("the database refused a write to %s: %s", collection.name, exc.orig)
            raise Invalid(
                "The database refused the values (one is out of its column's range or form)"
            ) from None

    @staticmethod
    def _integrity_problem(collection: Collection, exc: IntegrityError) -> Invalid:
        constraint = str(getattr(exc.orig, "constraint_name", None) or "a constraint")
        field = next(
            (name for name in collection.fields if f"_{name}_" in f"{constraint}_"), "body"
        )
        return Invalid(
            f"The record breaks a constraint ({constraint})",
            errors=[
                {
                    "field": field,
                    "message": "refers to a record that does not exist, or conflicts",
                    "source": "body",
                }
            ],
        )

    async def create(
        self, collection: Collection, principal: Principal | None, data: dict[str, Any]
    ) -> Row:
        row = await self._create(collection, principal, data)
        values = values_of(collection, row)
        await self.db.commit()
        return values

    async def update(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        changes: dict[str, Any],
        if_match: str | None,
    ) -> Row:
        row = await self._update(collection, principal, record_id, changes, if_match)
        values = values_of(collection, row)
        await self.db.commit()
        return values

    async def delete(
        self,
        collection: Collection,
        principal: Principal | None,
        record_id: UUID,
        if_match: str | None,
    ) -> None:
        await self._delete(collection, principal, record_id, if_match)
        await self.db.commit()

    async def batch(
        self,
        collection: Collection,
        principal: Principal | None,
        operations: Sequence[tuple[str, UUID | None, dict[str, Any], str | None]],
    ) -> list[tuple[str, Row]]:
        """All operations in one transaction: all of them happen, or none."""
        done: list[tuple[str, Row]] = []
        for index, (op, record_id, data, if_match) in enumerate(operations):
            try:
                if op == "create":
                    row = await self._create(collection, principal, data)
                    done.append((op, values_of(collection, row)))
                elif record_id is None:
                    raise Invalid(
                        f"{op} needs an id",
                        errors=[{"field": "id", "message": "required", "source": "body"}],
                    )
                elif op == "update":
                    row = await self._update(collection, principal, record_id, data, if_match)
                    done.append((op, values_of(collection, row)))
                else:
                    row = await self._delete(collection, principal, record_id, if_match)
                    done.append((op, values_of(collection, row)))
            except DomainError as problem:
                await self.db.rollback()
                raise _in_operation(problem, index) from None
        await self.db.commit()
        return done

    def now(self) -> datetime:
        return self.clock.now()


def _in_operation(error: DomainError, index: int) -> DomainError:
    """Point a failed operation's refusal at ``operations[index]``; nothing was written."""
    errors = [dict(e) for e in error.errors or ()] or [
        {"field": "", "message": error.detail, "source": "body"}
    ]
    for item in errors:
        inner = item.get("field") or ""
        item["field"] = f"operations[{index}]" + (f".{inner}" if inner else "")
    return error.moved(f"Operation {index} failed, so none were applied: {error.detail}", errors)
