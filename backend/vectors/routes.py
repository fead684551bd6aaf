"""HTTP routes: POST /collections/{c}/search and GET /collections/{c}/embedding-status.

(No ``from __future__ import annotations``: the response types are made per collection at
start-up, and Litestar reads the annotations as objects.)
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from backend.auth.deps import BEARER, asks_who_calls, principal_of
from backend.collections.rules import CompiledRules
from backend.collections.schemas import record_types
from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.identity import Principal
from backend.inputs import bounded_by_settings
from backend.lib.names import NOT_BLANK
from backend.problems import Problem
from backend.vectors.service import SearchService, search_service_for


class SearchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(pattern=NOT_BLANK)]
    mode: Literal["vector", "text", "hybrid"] = "hybrid"
    k: Annotated[int, bounded_by_settings(1, "vector_search_max_k")] = 10
    filter: str | None = None
    min_score: float | None = None


class ChunkRef(msgspec.Struct, frozen=True, kw_only=True):
    index: int
    content: str


class FailedFile(msgspec.Struct, frozen=True, kw_only=True):
    """A document that could not be embedded, and why (no text layer, unreadable, …)."""

    record_id: str
    file: str
    reason: str
    failed_at: datetime


class RecordFile(msgspec.Struct, frozen=True, kw_only=True):
    """One document of the record asked about (``?record=``), and where it stands."""

    file: str
    status: Literal["pending", "done", "failed"]
    # failed: why; done: what was left out (EMBEDDING_FILE_MAX_PAGES or _CHARS), if anything
    reason: str | None
    chunks: int | None
    pages: int | None  # a PDF's page count
    updated_at: datetime | None


class FileStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The documents of ``Embed(files=[...])``, per file: pending, failed, done; the failed
    ones listed with their reasons (newest first, at most EMBEDDING_STATUS_MAX_FAILED_FILES);
    with ``?record=<id>``, that record's documents one by one."""

    pending: int
    failed: int
    done: int
    failures: list[FailedFile]
    record: list[RecordFile] | msgspec.UnsetType = msgspec.UNSET


class VersionStatus(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    model: str
    pending: int
    failed: int
    done: int


class EmbeddingStatus(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    model: str
    pending: int
    failed: int
    done: int
    building: VersionStatus | None = None
    # Only for a collection that embeds files (Embed(files=[...])).
    files: FileStatus | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Searching:
    """Who searches, and the search: the one dependency of POST …/search (sibling
    dependencies would be resolved in a task group per request)."""

    principal: Principal | None
    service: SearchService


def _router_for(collection: Collection) -> Router:
    Read = record_types(collection).read
    title = Read.__name__.removesuffix("Record")
    # file and page: the hit is a chunk of one of the record's documents (Embed(files=...));
    # page is a PDF's, from 1. Both are left out for a chunk of the record's text fields.
    Item = msgspec.defstruct(
        f"{title}SearchItem",
        [
            ("record", Read),
            ("score", float),
            ("chunk", ChunkRef),
            ("file", str | msgspec.UnsetType, msgspec.UNSET),
            ("page", Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType, msgspec.UNSET),
        ],
        kw_only=True,
    )
    Results = msgspec.defstruct(f"{title}SearchResults", [("items", list[Item])], kw_only=True)  # type: ignore[valid-type]
    name = collection.name

    @post(
        "/search",
        operation_id=f"search_{name}",
        summary=f"Find {name} by meaning (vector), by words (text) or both (hybrid)",
        status_code=200,
    )
    async def search(data: SearchRequest, searching: Searching) -> Response[Results]:  # type: ignore[valid-type]
        search_service = searching.service
        hits = await search_service.search(
            collection,
            searching.principal,
            query=data.query,
            mode=data.mode,
            k=data.k,
            filter_=data.filter,
            min_score=data.min_score,
        )
        results = Results(
            items=[
                Item(
                    record=Read(**hit.row),
                    score=hit.score,
                    chunk=ChunkRef(index=hit.chunk, content=hit.content),
                    file=hit.file or msgspec.UNSET,
                    page=msgspec.UNSET if hit.page is None else hit.page,
                )
                for hit in hits
            ]
        )
        plan = search_service.last_plan
        # How the vector part ran (hnsw, exact, or hnsw then exact), for tuning and debugging.
        headers = {"Litebase-Search-Plan": plan.describe()} if plan is not None else {}
        return Response(results, headers=headers)

    @get(
        "/embedding-status",
        operation_id=f"embedding_status_{name}",
        summary=f"How many {name} records are embedded, pending or failed (admins)",
        security=BEARER,
    )
    async def embedding_status(
        search_service: SearchService,
        current: Principal,
        record: Annotated[
            UUID | None,
            Parameter(
                required=False,
                description="A record whose documents (Embed(files=...)) to list one by one",
            ),
        ] = None,
    ) -> EmbeddingStatus:
        if not current.bypasses_rules:
            raise Problem(403, "Only admins may read the embedding status", code="forbidden")
        return msgspec.convert(await search_service.status(collection, record), EmbeddingStatus)

    return Router(
        f"/collections/{name}",
        route_handlers=[search, embedding_status],
        tags=[f"collection: {name}"],
    )


def vector_routers(
    registry: CollectionRegistry, rules: dict[str, CompiledRules], settings: Settings
) -> list[Router]:
    embedded = [c for c in registry if c.embed is not None]
    if not embedded:
        return []

    def provide_search(state: State) -> SearchService:
        return search_service_for(state, settings, rules)

    @asks_who_calls
    async def provide_searching(request: Request[Any, Any, Any]) -> Searching:
        return Searching(await principal_of(request), provide_search(request.app.state))

    return [
        Router(
            "/",
            route_handlers=[_router_for(c) for c in embedded],
            dependencies={
                "search_service": Provide(provide_search, sync_to_thread=False),
                "searching": Provide(provide_searching),
            },
        )
    ]
