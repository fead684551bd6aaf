"""HTTP routes under /collections, made per collection so OpenAPI has its typed bodies.

(No ``from __future__ import annotations`` here: the handlers' annotations are the record types
made at start-up, and Litestar reads them as objects.)
"""

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from backend.collections.deps import Reading, reading_provider
from backend.collections.reading import SORTABLE_KINDS, ListQuery, Row, etag_of
from backend.collections.rules import CompiledRules
from backend.collections.schemas import (
    BatchRequest,
    BatchResponse,
    BatchResult,
    CollectionDescription,
    RecordTypes,
    describe,
    provided,
    record_types,
)
from backend.collections.service import RecordService
from backend.collections.spec import Collection, CollectionRegistry
from backend.collections.uploads import FILE_PARTS_OPT, multipart_writes
from backend.config import Settings
from backend.identity import Principal
from backend.paging import Page, Paging, page_of_list
from backend.problems import Problem, locate, may_answer

IfMatch = Annotated[str | None, Parameter(header="If-Match", required=False)]


def _one_of(names: Iterable[str]) -> str:
    return "|".join(re.escape(name) for name in sorted(names))


# Spaces the server trims around a name (str.strip trims more; JSON Schema's \s means other
# characters than Python's, so the document says which).
_PAD = "[ \t]*"


def names_pattern(names: Iterable[str]) -> str:
    """Any of ``names``, comma-separated, blank parts ignored (``?expand=``, ``?fields=``)."""
    choices = _one_of(names)
    item = f"{_PAD}(?:{choices})?{_PAD}" if choices else _PAD
    return rf"^{item}(?:,{item})*$"


def sort_pattern(names: Iterable[str]) -> str:
    """``?sort=``: sortable fields, comma-separated, each with an optional ``-`` (descending)
    or ``+``; no blank part; empty for the default order (reading.py's ``_sort_keys``)."""
    item = f"{_PAD}[+-]*(?:{_one_of(names)}){_PAD}"
    return rf"^(?:{item}(?:,{item})*)?$"


def expand_parameter(expandable: Iterable[str]) -> Any:
    """``?expand=``: the collection's relation fields, comma-separated (blank parts ignored);
    its pattern names them, so a collection without relations takes only a blank one."""
    return Annotated[
        str | None,
        Parameter(
            required=False,
            pattern=names_pattern(expandable),
            description="Relation fields, comma-separated: each related record the caller may"
            " view comes inline under `expand`",
        ),
    ]


def _expansions(collection: Collection, registry: CollectionRegistry) -> dict[str, Collection]:
    """The collection's fields that point at another collection, and that collection."""
    by_table = {c.table.name: c for c in registry}
    return {
        field.name: by_table[field.relation]
        for field in collection.fields.values()
        if field.relation in by_table
    }


class _Expander:
    """What ``?expand=`` may name on one collection (its relation fields), and inlining the
    related records the caller may view."""

    def __init__(self, name: str, expandable: dict[str, Collection]) -> None:
        self.name = name
        self.expandable = expandable
        self.related_read = {
            field: record_types(target).read for field, target in expandable.items()
        }

    def fields(self, text: str) -> dict[str, Collection]:
        wanted = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [field for field in wanted if field not in self.expandable]
        if unknown:
            choices = ", ".join(sorted(self.expandable)) or "none here"
            raise Problem(
                422,
                f"expand names relation fields of {self.name} ({choices})",
                errors=[
                    {
                        "field": "expand",
                        "message": f"not a relation to a collection: {', '.join(unknown)}",
                        "source": "query",
                    }
                ],
            )
        return {field: self.expandable[field] for field in wanted}

    async def attach(
        self, reading: Reading, rows: list[Any], items: list[dict[str, Any]], text: str
    ) -> list[dict[str, Any]]:
        fields = self.fields(text)
        found = await reading.records.related(reading.principal, rows, fields)
        for row, item in zip(rows, items, strict=True):
            item["expand"] = {
                field: (
                    self.related_read[field](**found[field][row[field]])
                    if row[field] in found[field]
                    else None
                )
                for field in fields
            }
        return items


def _operations(
    data: BatchRequest, create: type[Any], update: type[Any], most: int
) -> Sequence[tuple[str, UUID | None, dict[str, Any], str | None]]:
    """A batch's operations, each body checked against the collection's create or update
    shape; the first that fails refuses the whole batch, naming its index."""
    if not 1 <= len(data.operations) <= most:
        raise Problem(
            422,
            f"A batch holds 1 to {most} operations",
            errors=[
                {"field": "operations", "message": "wrong number of operations", "source": "body"}
            ],
        )
    operations = []
    for index, operation in enumerate(data.operations):
        try:
            body = msgspec.convert(
                operation.data or {}, create if operation.op == "create" else update
            )
        except msgspec.ValidationError as exc:
            field, message = locate(str(exc), f"operations[{index}].data")
            raise Problem(
                422,
                f"Operation {index} failed, so none were applied: {message}",
                errors=[{"field": field, "message": message, "source": "body"}],
            ) from None
        operations.append(
            (
                operation.op,
                operation.id,
                provided(body) if operation.op != "delete" else {},
                operation.if_match,
            )
        )
    return operations


def _router_for(
    collection: Collection,
    types: RecordTypes,
    settings: Settings,
    expandable: dict[str, Collection],
) -> Router:
    Read, Create, Update, Page = types.read, types.create, types.update, types.page
    name = collection.name
    expander = _Expander(name, expandable)
    Expand = expand_parameter(expandable)
    sortable = [
        field
        for field, spec in collection.fields.items()
        if spec.kind in SORTABLE_KINDS and not spec.nullable
    ]

    def read(row: Row | asyncpg.Record) -> Any:
        return Read(**row)

    # With file fields, create and update also take multipart/form-data (docs/files.md).
    with_files: dict[str, Any] = (
        {**may_answer(413, 415), FILE_PARTS_OPT: sorted(collection.file_fields)}
        if collection.file_fields
        else {}
    )

    @get("/", operation_id=f"list_{name}", summary=f"List {name}")
    async def list_records(
        reading: Reading,
        filter_: Annotated[str | None, Parameter(query="filter", required=False)] = None,
        sort: Annotated[
            str | None,
            Parameter(
                required=False,
                pattern=sort_pattern(sortable),
                description="Fields to order by, comma-separated, `-` for descending:"
                " non-null text, numbers, booleans, ids and times (`-created_at` when absent)",
            ),
        ] = None,
        limit: Annotated[
            int, Parameter(ge=1, le=settings.page_max_limit)
        ] = settings.page_default_limit,
        cursor: Annotated[str | None, Parameter(required=False)] = None,
        fields: Annotated[
            str | None,
            Parameter(
                required=False,
                pattern=names_pattern(collection.fields),
                description="The fields each record carries, comma-separated (all when absent)",
            ),
        ] = None,
        count: bool = False,
        expand: Expand = None,  # type: ignore[valid-type]
    ) -> Page:  # type: ignore[valid-type]
        # A blank ?expand= (or only commas) expands nothing.
        expand = expand if expand and expander.fields(expand) else None
        page = await reading.records.list_page(
            collection,
            reading.principal,
            ListQuery(
                filter=filter_, sort=sort, limit=limit, cursor=cursor, fields=fields, count=count
            ),
        )
        if page.fields is None and expand is None:
            return Page(
                items=[read(row) for row in page.rows],
                next_cursor=page.next_cursor,
                total=page.total,
            )
        shown = page.fields or list(collection.fields)
        items = [{field: row[field] for field in shown} for row in page.rows]
        if expand is not None:
            items = await expander.attach(reading, list(page.rows), items, expand)
        return Response({"items": items, "next_cursor": page.next_cursor, "total": page.total})

    @post(
        "/",
        operation_id=f"create_{name}",
        summary=f"Create a record in {name}",
        before_request=multipart_writes(collection, read, creating=True),
        opt=with_files,
    )
    async def create_record(
        data: Create,  # type: ignore[valid-type]
        records: RecordService,
        principal: Principal | None,
    ) -> Response[Read]:  # type: ignore[valid-type]
        row = await records.create(collection, principal, provided(data))
        return Response(read(row), status_code=201, headers={"ETag": etag_of(row)})

    @get("/{record_id:uuid}", operation_id=f"get_{name}", summary=f"Read a record of {name}")
    async def get_record(
        record_id: UUID,
        reading: Reading,
        expand: Expand = None,  # type: ignore[valid-type]
    ) -> Response[Read]:  # type: ignore[valid-type]
        expand = expand if expand and expander.fields(expand) else None
        row = await reading.records.get(collection, reading.principal, record_id)
        if expand is None:
            return Response(read(row), headers={"ETag": etag_of(row)})
        (item,) = await expander.attach(
            reading, [row], [{field: row[field] for field in collection.fields}], expand
        )
        return Response(item, headers={"ETag": etag_of(row)})

    @patch(
        "/{record_id:uuid}",
        operation_id=f"update_{name}",
        summary=f"Change a record of {name}",
        before_request=multipart_writes(collection, read, creating=False),
        opt=with_files,
    )
    async def update_record(
        record_id: UUID,
        data: Update,  # type: ignore[valid-type]
        records: RecordService,
        principal: Principal | None,
        if_match: IfMatch = None,
    ) -> Response[Read]:  # type: ignore[valid-type]
        row = await records.update(collection, principal, record_id, provided(data), if_match)
        return Response(read(row), headers={"ETag": etag_of(row)})

    @delete(
        "/{record_id:uuid}", operation_id=f"delete_{name}", summary=f"Delete a record of {name}"
    )
    async def delete_record(
        record_id: UUID,
        records: RecordService,
        principal: Principal | None,
        if_match: IfMatch = None,
    ) -> None:
        await records.delete(collection, principal, record_id, if_match)

    @post(
        "/records:batch",
        operation_id=f"batch_{name}",
        summary=f"Up to {settings.batch_max_operations} changes to {name} in one transaction",
        status_code=200,
        # An operation's record that is not there (or hidden), a conflict, a stale if_match.
        opt=may_answer(404, 409, 412),
    )
    async def batch_records(
        data: BatchRequest, records: RecordService, principal: Principal | None
    ) -> BatchResponse:
        operations = _operations(data, Create, Update, settings.batch_max_operations)
        done = await records.batch(collection, principal, operations)
        return BatchResponse(
            results=[
                BatchResult(
                    op=op,
                    id=row["id"],
                    record=None if op == "delete" else msgspec.to_builtins(read(row)),
                )
                for op, row in done
            ]
        )

    records = Router(
        "/records",
        route_handlers=[list_records, create_record, get_record, update_record, delete_record],
    )
    return Router(
        f"/collections/{name}",
        route_handlers=[records, batch_records],
        tags=[f"collection: {name}"],
    )


def collection_routers(
    registry: CollectionRegistry, rules: dict[str, CompiledRules], settings: Settings
) -> list[Router]:
    described = [describe(c) for c in registry]

    def provide_records(db_session: AsyncSession, state: State) -> RecordService:
        return RecordService(db_session, state.reader, settings, state.clock, rules)

    @get(
        "/",
        operation_id="list_collections",
        summary="The collections and their fields",
        sync_to_thread=False,
    )
    def list_collections(paging: Paging) -> Page[CollectionDescription]:
        return page_of_list(described, paging)

    routers = [Router("/collections", route_handlers=[list_collections], tags=["collections"])]
    routers += [
        _router_for(c, record_types(c), settings, _expansions(c, registry)) for c in registry
    ]
    return [
        Router(
            "/",
            route_handlers=routers,
            dependencies={
                "records": Provide(provide_records, sync_to_thread=False),
                "reading": Provide(reading_provider(rules, settings)),
            },
        )
    ]
