"""Reads on the hot path: SQLAlchemy builds the statement, asyncpg runs it.

A read through an ORM session pays for a transaction (BEGIN and COMMIT round trips), the
session and the identity map. For GET and list, none of that buys anything: this runs the
same statement, compiled once per shape (SQLAlchemy's cache key), on a plain asyncpg pool in
autocommit, and hands back rows as dicts. Nothing on this pool may change session state
(SET, LISTEN, advisory locks, cursors): connections go back to it without a reset.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as AsyncpgDialect
from sqlalchemy.sql.compiler import SQLCompiler

_DIALECT = AsyncpgDialect()  # type: ignore[no-untyped-call]
_MAX_SHAPES = 2000


async def _decode_json(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to undo: this pool only runs reads, whose settings are transaction-local."""


async def create_read_pool(dsn: str, max_size: int) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        # min_size=0: no connection until the first read, so the app starts (and /ready can
        # say 503) while Postgres is down.
        dsn,
        min_size=0,
        max_size=max_size,
        init=_decode_json,
        # asyncpg's default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round
        # trip on every release; a read never leaves any of that behind (asyncpg still rolls
        # back a transaction left open).
        reset=_keep_session,
    )
    return pool


class Shape:
    """A statement compiled once, whose named bind parameters get their values per run."""

    __slots__ = ("_fixed", "_slots", "sql")

    def __init__(self, statement: Select[Any], names: Sequence[str]) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        order = list(compiled.positiontup or ())
        params = compiled.construct_params(_check=False)
        self.sql = compiled.string
        self._fixed = [params[name] for name in order]
        self._slots = {
            name: [i for i, bound in enumerate(order) if bound == name] for name in names
        }

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        args = list(self._fixed)
        for name, positions in self._slots.items():
            for position in positions:
                args[position] = values[name]
        return args


class Reader:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._compiled: OrderedDict[Any, SQLCompiler] = OrderedDict()
        self._shapes: dict[Hashable, Shape] = {}

    def shape(self, key: Hashable, build: Callable[[], Select[Any]], names: Sequence[str]) -> Shape:
        """The statement ``build()`` makes, compiled once per ``key``, which must name all it
        depends on but the ``names`` given at run time. This skips building the statement and
        its cache key on every request (most of a GET's SQL cost)."""
        found = self._shapes.get(key)
        if found is None:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            found = self._shapes[key] = Shape(build(), names)
        return found

    async def shaped_rows(self, shape: Shape, **values: Any) -> list[dict[str, Any]]:
        return [dict(record) for record in await self.shaped_records(shape, **values)]

    async def shaped_records(self, shape: Shape, **values: Any) -> list[asyncpg.Record]:
        """The rows as asyncpg made them (by name: ``record["id"]``, ``record.items()``), for a
        caller that keeps only some of them and need not copy each into a dict."""
        async with self.pool.acquire() as connection:
            records: list[asyncpg.Record] = await connection.fetch(shape.sql, *shape.args(values))
        return records

    def _compile(self, statement: Select[Any]) -> tuple[str, list[Any]]:
        cache_key = statement._generate_cache_key()
        assert cache_key is not None
        compiled = self._compiled.get(cache_key.key)
        if compiled is None:
            compiled = statement.compile(dialect=_DIALECT, cache_key=cache_key)
            assert isinstance(compiled, SQLCompiler)
            self._compiled[cache_key.key] = compiled
            if len(self._compiled) > _MAX_SHAPES:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(cache_key.key)
        params = compiled.construct_params(extracted_parameters=cache_key.bindparams)
        return compiled.string, [params[name] for name in compiled.positiontup or ()]

    async def rows(self, statement: Select[Any]) -> list[dict[str, Any]]:
        sql, args = self._compile(statement)
        async with self.pool.acquire() as connection:
            records = await connection.fetch(sql, *args)
        return [dict(record) for record in records]

    async def scalar(self, statement: Select[Any]) -> Any:
        sql, args = self._compile(statement)
        async with self.pool.acquire() as connection:
            return await connection.fetchval(sql, *args)

    async def rows_with(
        self, statement: Select[Any], settings: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Rows, read in a transaction whose planner/executor settings are ``settings``
        (e.g. ``hnsw.ef_search``; read at execution time, so a cached plan honours them)."""
        sql, args = self._compile(statement)
        async with self.pool.acquire() as connection, connection.transaction(readonly=True):
            for name, value in settings.items():
                await connection.execute("SELECT set_config($1, $2, true)", name, value)
            records = await connection.fetch(sql, *args)
        return [dict(record) for record in records]

    async def estimated_rows(self, statement: Select[Any]) -> float:
        """The planner's row estimate for ``statement`` (cheap: nothing is run)."""
        sql, args = self._compile(statement)
        async with self.pool.acquire() as connection:
            plan = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        if isinstance(plan, str):
            plan = json.loads(plan)
        return float(plan[0]["Plan"]["Plan Rows"])
