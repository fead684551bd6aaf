"""Creates and updates that carry files: a multipart/form-data body on the records' own
``POST`` and ``PATCH``, answered by whoever stores files (backend/files/uploads.py puts itself
in ``app.state.record_uploads``; collections only know this protocol).

Litestar reads a route's ``data`` as JSON before the handler runs, under MAX_BODY_BYTES and
whole into memory; a multipart body must stream to storage instead. So the two routes'
``before_request`` hook answers multipart requests itself, and lets JSON ones through to the
handler (after check_input, which every route gets and a route's own hook replaces).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

from litestar import Request, Response

from backend.collections.reading import Row, etag_of
from backend.collections.spec import Collection
from backend.errors import Unsupported
from backend.inputs import check_input

# A route's ``opt`` key naming the file fields its multipart body may carry (the OpenAPI
# document describes that body, backend/openapi.py).
FILE_PARTS_OPT = "file_parts"


class RecordUploads(Protocol):
    async def write(
        self,
        request: Request[Any, Any, Any],
        collection: Collection,
        record_id: UUID | None,
        if_match: str | None,
    ) -> Row:
        """Store the body's files, then create (``record_id`` None) or update the record with
        their names and the body's fields, in one transaction; the record as written."""
        ...


def is_multipart(request: Request[Any, Any, Any]) -> bool:
    return request.content_type[0] == "multipart/form-data"


def multipart_writes(
    collection: Collection, read: Callable[[Row], Any], *, creating: bool
) -> Callable[[Request[Any, Any, Any]], Any]:
    """The ``before_request`` hook of a collection's create (``creating``) or update route."""

    async def answer_multipart(request: Request[Any, Any, Any]) -> Response[Any] | None:
        if not is_multipart(request):
            await check_input(request)
            return None
        uploads: RecordUploads | None = getattr(request.app.state, "record_uploads", None)
        if uploads is None or not collection.file_fields:
            raise Unsupported(
                f"{collection.name} takes JSON bodies (it has no file fields)",
                errors=[
                    {"field": "Content-Type", "message": "not application/json", "source": "header"}
                ],
            )
        record_id = None if creating else request.path_params["record_id"]
        row = await uploads.write(request, collection, record_id, request.headers.get("if-match"))
        return Response(
            read(row), status_code=201 if creating else 200, headers={"ETag": etag_of(row)}
        )

    return answer_multipart
