"""Search over an embedded collection's chunks, under the collection's list rule.

Three modes: ``vector`` (cosine over the active version's HNSW index), ``text`` (Postgres full
text over the same chunks, ranked by ``ts_rank_cd``) and ``hybrid`` (reciprocal rank fusion,
k = 60, of the two). Results hold one item per record: its best chunk.

Filtered vector search chooses its plan. pgvector 0.6 filters *after* the HNSW scan, so a
filter that keeps 1% of rows leaves ~0.4 of 10 wanted rows at ef_search 40. From the planner's
estimate of how many records the rule and filter admit, search either scans exactly over those
records (few of them) or raises ``hnsw.ef_search`` so that enough candidates survive the filter
(many of them), and falls back to the exact scan if the index still returned too few. The plan
is visible in the SQL text (an exact scan orders by ``distance + 0``, which no index serves),
because asyncpg caches plans and Postgres would not re-plan for a changed planner setting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import asyncpg
from litestar.datastructures import State
from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
)

from backend.collections.reading import RecordReads, Row
from backend.collections.reads import Reader
from backend.collections.rules import CompiledRules
from backend.collections.spec import Collection
from backend.config import Settings
from backend.errors import Forbidden, invalid_field
from backend.identity import Principal
from backend.vectors.chunking import EmbedVersion
from backend.vectors.queries import QueryEmbeddings
from backend.vectors.ranking import Hit, best_per_record, fuse
from backend.vectors.schema import TEXT_SEARCH_CONFIG, checked_version, chunks_table
from backend.vectors.status import embedding_status
from backend.vectors.versions import ActiveVersions

Mode = Literal["vector", "text", "hybrid"]
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
HNSW_DEFAULT_EF_SEARCH = 40  # pgvector's default (hnsw.ef_search is never set for the session)
_TOTALS_TTL = 30.0


@dataclass(frozen=True)
class SearchPlan:
    """How a vector search ran, for tests and the bench: 'hnsw' or 'exact', and ef_search."""

    method: str
    ef_search: int | None = None
    estimated_rows: float | None = None

    def describe(self) -> str:
        parts = [self.method]
        if self.ef_search is not None:
            parts.append(f"ef_search={self.ef_search}")
        if self.estimated_rows is not None:
            parts.append(f"estimated_rows={int(self.estimated_rows)}")
        return "; ".join(parts)


class _Where:
    """The list rule AND the client's filter, built on first use: and_() of two clauses costs
    tens of microseconds, and a search whose statement is kept compiled never needs it."""

    __slots__ = ("_clause", "_parts")

    def __init__(self, *parts: ColumnElement[bool]) -> None:
        self._parts = parts
        self._clause: ColumnElement[bool] | None = None

    @property
    def clause(self) -> ColumnElement[bool]:
        if self._clause is None:
            self._clause = and_(*self._parts)
        return self._clause


def search_service_for(
    state: State, settings: Settings, rules: dict[str, CompiledRules]
) -> SearchService:
    """Search over the app's shared reader and caches (no ORM session): /search and /ask."""
    records = RecordReads(state.reader, settings, state.clock, rules)
    return SearchService(
        records, state.reader, settings, state.embedding_versions, state.query_embeddings
    )


class SearchService:
    def __init__(
        self,
        records: RecordReads,
        reader: Reader,
        settings: Settings,
        versions: ActiveVersions,
        embeddings: QueryEmbeddings,
    ) -> None:
        self.records = records
        self.reader = reader
        self.settings = settings
        self.versions = versions
        self.embeddings = embeddings
        self.last_plan: SearchPlan | None = None
        self._where_key: tuple[Any, ...] | None = None  # see RecordReads.list_where_key

    # --- the endpoint ----------------------------------------------------------------------

    async def search(
        self,
        collection: Collection,
        principal: Principal | None,
        *,
        query: str,
        mode: Mode = "hybrid",
        k: int = 10,
        filter_: str | None = None,
        min_score: float | None = None,
        max_query_chars: int | None = None,
    ) -> list[Hit]:
        """``max_query_chars``: the caller's own bound on ``query``, checked before (ask's
        question); else SEARCH_MAX_QUERY_CHARS."""
        if not query.strip():
            raise invalid_field("The query is empty", "query", "empty")
        limit = max_query_chars or self.settings.search_max_query_chars
        if len(query) > limit:
            raise invalid_field(
                f"The query is longer than {limit} characters (SEARCH_MAX_QUERY_CHARS)",
                "query",
                "too long",
            )
        if not 1 <= k <= self.settings.vector_search_max_k:
            raise invalid_field(
                f"k must be between 1 and {self.settings.vector_search_max_k}", "k", "out of range"
            )
        if "list" in self.records.rules[collection.name].admin_only and not (
            principal is not None and principal.bypasses_rules
        ):
            raise Forbidden(f"Only admins may search {collection.name}", code="forbidden")
        where = _Where(
            self.records.rule(collection, "list", principal),
            self.records.filter_clause(collection, filter_, principal),
        )
        self._where_key = self.records.list_where_key(collection, principal, filter_)
        from_cache = self.versions.is_cached(collection.name)
        spec = await self.versions.get(collection.name)
        if spec is None:
            return []  # nothing embedded yet
        compiled = self.records.rules[collection.name]
        admits_all = (principal is not None and principal.bypasses_rules) or (
            compiled.nodes["list"] is None and "list" not in compiled.admin_only
        )
        filtered = bool(filter_) or not admits_all
        hits = await self._run(collection, spec, where, filtered, mode, query, k)
        if len(hits) < k and from_cache:
            # The version may have been swapped since it was cached (its chunks are gone):
            # look again, and search the new one if so.
            current = await self.versions.get(collection.name, fresh=True)
            if current is not None and current.version != spec.version:
                hits = await self._run(collection, current, where, filtered, mode, query, k)
        if min_score is not None:
            hits = [hit for hit in hits if hit.score >= min_score]
        return hits

    async def _run(
        self,
        collection: Collection,
        spec: EmbedVersion,
        where: _Where,
        filtered: bool,
        mode: Mode,
        query: str,
        k: int,
    ) -> list[Hit]:
        if mode == "vector":
            return await self._vector(collection, spec, where, filtered, query, k)
        if mode == "text":
            return await self._text(collection, spec, where, query, k)
        return fuse(
            await self._vector(collection, spec, where, filtered, query, k),
            await self._text(collection, spec, where, query, k),
            k,
        )

    async def status(self, collection: Collection, record: UUID | None = None) -> dict[str, Any]:
        return await embedding_status(self.reader, self.versions, self.settings, collection, record)

    # --- vector ----------------------------------------------------------------------------

    def _base(self, collection: Collection, spec: EmbedVersion) -> tuple[Any, Any]:
        table = collection.table
        chunks = chunks_table(table.name)
        joined = chunks.join(table, table.c.id == chunks.c.record_id)
        version = chunks.c.version == literal_column(f"'{checked_version(spec.version)}'")
        return joined, version

    def _vector_statement(
        self,
        collection: Collection,
        spec: EmbedVersion,
        where: ColumnElement[bool],
        query_vector: str,
        limit: int,
        *,
        exact: bool,
    ) -> Select[Any]:
        table = collection.table
        chunks = chunks_table(table.name)
        joined, version = self._base(collection, spec)
        dims = Vector(spec.dimensions)
        distance = cast(chunks.c.embedding, dims).op("<=>", return_type=Float)(
            cast(bindparam("query_vector", query_vector), dims)
        )
        order = distance + 0 if exact else distance
        return (
            select(
                table,
                chunks.c.chunk.label("_lb_chunk"),
                chunks.c.content.label("_lb_content"),
                chunks.c.file.label("_lb_file"),
                chunks.c.page.label("_lb_page"),
                distance.label("_lb_distance"),
            )
            .select_from(joined)
            .where(version, where)
            .order_by(order)
            .limit(limit)
        )

    async def _vector(
        self,
        collection: Collection,
        spec: EmbedVersion,
        where: _Where,
        filtered: bool,
        query: str,
        k: int,
    ) -> list[Hit]:
        query_vector = await self.embeddings.vector(spec, query)
        candidates = k * self.settings.vector_candidates_per_result
        ef = max(self.settings.vector_ef_search, candidates)
        exact = ef > HNSW_MAX_EF_SEARCH
        estimate = None
        if filtered and not exact:
            estimate = await self.reader.estimated_rows(
                select(collection.table.c.id).where(where.clause)
            )
            total = await self._total(collection)
            if estimate <= self.settings.vector_exact_scan_max_rows:
                exact = True
            else:
                ef = max(ef, math.ceil(candidates * max(total, 1.0) / max(estimate, 1.0) * 1.5))
                exact = ef > HNSW_MAX_EF_SEARCH
        hits: list[Hit] = []
        if not exact:
            self.last_plan = SearchPlan("hnsw", ef, estimate)
            if ef == HNSW_DEFAULT_EF_SEARCH:  # the session's own value: no transaction to set it
                rows = await self._vector_rows(
                    collection, spec, where, query_vector, candidates, exact=False
                )
            else:
                statement = self._vector_statement(
                    collection, spec, where.clause, query_vector, candidates, exact=False
                )
                rows = await self.reader.rows_with(statement, {"hnsw.ef_search": str(ef)})
            hits = best_per_record(rows, k, lambda row: 1.0 - row["_lb_distance"])
        if len(hits) < k:  # the index returned too few (or was not used): scan exactly
            if not exact:
                self.last_plan = SearchPlan("hnsw+exact", ef, estimate)
            else:
                self.last_plan = SearchPlan("exact", None, estimate)
            rows = await self._vector_rows(
                collection, spec, where, query_vector, candidates, exact=True
            )
            hits = best_per_record(rows, k, lambda row: 1.0 - row["_lb_distance"])
        return hits

    async def _vector_rows(
        self,
        collection: Collection,
        spec: EmbedVersion,
        where: _Where,
        query_vector: str,
        limit: int,
        *,
        exact: bool,
    ) -> Sequence[Row | asyncpg.Record]:
        """The vector statement's rows; compiled once per shape when its WHERE can be kept."""
        if self._where_key is None:
            return await self.reader.rows(
                self._vector_statement(
                    collection, spec, where.clause, query_vector, limit, exact=exact
                )
            )
        key = ("vector", collection.name, spec.version, spec.dimensions, limit, exact)
        shape = self.reader.shape(
            (*key, *self._where_key),
            lambda: self._vector_statement(collection, spec, where.clause, "", limit, exact=exact),
            ["query_vector"],
        )
        # Records, not dicts: best_per_record copies only the rows it keeps.
        return await self.reader.shaped_records(shape, query_vector=query_vector)

    async def _total(self, collection: Collection) -> float:
        cached = _TOTALS.get(collection.name)
        if cached is not None and time.monotonic() - cached[0] < _TOTALS_TTL:
            return cached[1]
        total = await self.reader.estimated_rows(select(collection.table.c.id))
        _TOTALS[collection.name] = (time.monotonic(), total)
        return total

    # --- text ------------------------------------------------------------------------------

    async def _text(
        self,
        collection: Collection,
        spec: EmbedVersion,
        where: _Where,
        query: str,
        k: int,
    ) -> list[Hit]:
        table = collection.table
        chunks = chunks_table(table.name)
        joined, version = self._base(collection, spec)
        ts_query = func.websearch_to_tsquery(
            literal_column(f"'{TEXT_SEARCH_CONFIG}'::regconfig"), bindparam("text_query", query)
        )
        rank = func.ts_rank_cd(chunks.c.tsv, ts_query, type_=Float)
        statement = (
            select(
                table,
                chunks.c.chunk.label("_lb_chunk"),
                chunks.c.content.label("_lb_content"),
                chunks.c.file.label("_lb_file"),
                chunks.c.page.label("_lb_page"),
                rank.label("_lb_rank"),
            )
            .select_from(joined)
            .where(version, where.clause, chunks.c.tsv.op("@@")(ts_query))
            .order_by(rank.desc(), chunks.c.record_id, chunks.c.file, chunks.c.chunk)
            .limit(k * self.settings.vector_candidates_per_result)
        )
        rows = await self.reader.rows(statement)
        return best_per_record(rows, k, lambda row: float(row["_lb_rank"]))


_TOTALS: dict[str, tuple[float, float]] = {}
