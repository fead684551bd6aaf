"""The tus 1.0 routes at /files/uploads (core, creation, creation-with-upload, termination,
expiration): HTTP only, the logic is backend/files/resumable.py.

- ``OPTIONS /files/uploads``: anyone; what the server speaks (Tus-Version, Tus-Extension,
  Tus-Max-Size).
- ``POST /files/uploads``: a signed-in caller who may update the record Upload-Metadata names
  (404 when they may not see it, 403 when they may not change it). With a body
  (``Content-Type: application/offset+octet-stream``) its first bytes come at once.
- ``HEAD``, ``PATCH``, ``DELETE /files/uploads/{id}``: the upload's creator only (anyone else:
  404, as for an upload that does not exist or expired).
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, Response, delete, head, patch, post, route
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from backend.auth.deps import principal_of
from backend.errors import Unsupported, invalid_field
from backend.files.multipart import body_chunks
from backend.files.resumable import ResumableUploads
from backend.files.tus import Appended, metadata_of, parse_metadata, target_of
from backend.problems import RAW_BODY_OPT, Problem, may_answer

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"


# Every request but OPTIONS names the protocol's version (the document says which).
TusResumable = Annotated[
    str | None,
    Parameter(
        header="Tus-Resumable",
        required=True,
        schema_extra={"enum": [TUS_VERSION]},
        description=f"The tus protocol's version: {TUS_VERSION} (another, or none, is 412)",
    ),
]


def _tus_resumable(version: str | None) -> None:
    if version != TUS_VERSION:
        raise Problem(
            412,
            f"Send Tus-Resumable: {TUS_VERSION}",
            headers={"Tus-Version": TUS_VERSION, "Tus-Resumable": TUS_VERSION},
        )


async def _streamed(request: Request[Any, Any, Any]) -> None:
    """The route's ``before_request``, in place of the app's NUL check, which reads the whole
    body (under MAX_BODY_BYTES): these bodies are file bytes, streamed to staging."""
    return None


def _has_body(request: Request[Any, Any, Any]) -> bool:
    media_type, _ = request.content_type
    if media_type != OFFSET_OCTET_STREAM:
        return False
    return request.content_length != 0


def _answered(appended: Appended, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(appended.offset),
        "Upload-Expires": format_datetime(appended.expires_at, usegmt=True),
        **(extra or {}),
    }
    if appended.name is not None:
        headers["Litebase-File-Name"] = appended.name
    return headers


def resumable_routes() -> list[HTTPRouteHandler]:
    @route(
        "/uploads",
        http_method=[HttpMethod.OPTIONS],
        operation_id="options_file_uploads",
        summary="What the tus server speaks (Tus-Version, Tus-Extension, Tus-Max-Size)",
        status_code=HTTP_204_NO_CONTENT,
        include_in_schema=False,
    )
    async def upload_options(request: Request[Any, Any, Any]) -> Response[None]:
        service: ResumableUploads = request.app.state.resumable_uploads
        return Response(
            None,
            status_code=HTTP_204_NO_CONTENT,
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(service.max_size),
            },
        )

    @post(
        "/uploads",
        operation_id="post_file_upload",
        summary="Start a resumable (tus) upload into a record's file field",
        description="Headers: Tus-Resumable 1.0.0, Upload-Length, Upload-Metadata (collection,"
        " record, field, filename; values base64). Answers Location. A body of"
        " application/offset+octet-stream sends the first bytes at once.",
        status_code=HTTP_201_CREATED,
        opt={**may_answer(409, 412, 413, 415, 429), RAW_BODY_OPT: (OFFSET_OCTET_STREAM, False)},
        before_request=_streamed,
    )
    async def create_upload(
        request: Request[Any, Any, Any],
        tus_resumable: TusResumable,
        upload_length: Annotated[
            int, Parameter(header="Upload-Length", ge=0, description="The file's size in bytes")
        ],
        upload_metadata: Annotated[
            str | None,
            Parameter(
                header="Upload-Metadata",
                description="collection, record, field and filename: comma-separated"
                " `key base64(value)` pairs",
            ),
        ] = None,
    ) -> Response[None]:
        _tus_resumable(tus_resumable)
        if request.headers.get("upload-defer-length"):
            raise invalid_field(
                "Upload-Defer-Length is not supported: send Upload-Length",
                "Upload-Defer-Length",
                "not supported",
                "header",
            )
        length = upload_length
        target = target_of(parse_metadata(upload_metadata))
        state = request.app.state
        service: ResumableUploads = state.resumable_uploads
        principal = await principal_of(request)
        upload = await service.create(state, principal, target, length)
        location = f"{request.url.path.rstrip('/')}/{upload.id}"
        appended = Appended(0, upload.expires_at)
        if _has_body(request):
            appended = await service.append(
                state, principal, upload.id, 0, request.content_length, body_chunks(request)
            )
        return Response(
            None,
            status_code=HTTP_201_CREATED,
            headers=_answered(appended, {"Location": location}),
        )

    @head(
        "/uploads/{upload_id:uuid}",
        operation_id="head_file_upload",
        summary="How far a resumable upload got (Upload-Offset); its creator only",
        opt=may_answer(412),
    )
    async def upload_offset(
        upload_id: UUID, request: Request[Any, Any, Any], tus_resumable: TusResumable
    ) -> Response[None]:
        _tus_resumable(tus_resumable)
        state = request.app.state
        service: ResumableUploads = state.resumable_uploads
        upload = await service.find(state, await principal_of(request), upload_id)
        return Response(
            None,
            headers={
                **_answered(Appended(upload.offset, upload.expires_at)),
                "Upload-Length": str(upload.length),
                "Upload-Metadata": metadata_of(upload),
                "Cache-Control": "no-store",
            },
        )

    @patch(
        "/uploads/{upload_id:uuid}",
        operation_id="patch_file_upload",
        summary="Send a resumable upload's next bytes at Upload-Offset; its creator only",
        description="Content-Type: application/offset+octet-stream. A wrong Upload-Offset is"
        " 409. When the last byte arrives the file is put in its field (Litebase-File-Name).",
        status_code=HTTP_204_NO_CONTENT,
        opt={**may_answer(409, 412, 413, 415), RAW_BODY_OPT: (OFFSET_OCTET_STREAM, True)},
        before_request=_streamed,
    )
    async def append_upload(
        upload_id: UUID,
        request: Request[Any, Any, Any],
        upload_offset: Annotated[
            int, Parameter(header="Upload-Offset", ge=0, description="Where these bytes go")
        ],
        tus_resumable: TusResumable,
    ) -> Response[None]:
        _tus_resumable(tus_resumable)
        if request.content_type[0] != OFFSET_OCTET_STREAM:
            raise Unsupported(
                f"A PATCH's body is {OFFSET_OCTET_STREAM}",
                errors=[
                    {
                        "field": "Content-Type",
                        "message": "not " + OFFSET_OCTET_STREAM,
                        "source": "header",
                    }
                ],
            )
        state = request.app.state
        service: ResumableUploads = state.resumable_uploads
        appended = await service.append(
            state,
            await principal_of(request),
            upload_id,
            upload_offset,
            request.content_length,
            body_chunks(request),
        )
        return Response(None, status_code=HTTP_204_NO_CONTENT, headers=_answered(appended))

    @delete(
        "/uploads/{upload_id:uuid}",
        operation_id="delete_file_upload",
        summary="Drop an unfinished resumable upload and its bytes; its creator only",
        status_code=HTTP_204_NO_CONTENT,
        opt=may_answer(409, 412),
    )
    async def terminate_upload(
        upload_id: UUID, request: Request[Any, Any, Any], tus_resumable: TusResumable
    ) -> Response[None]:
        _tus_resumable(tus_resumable)
        state = request.app.state
        service: ResumableUploads = state.resumable_uploads
        await service.terminate(state, await principal_of(request), upload_id)
        return Response(
            None, status_code=HTTP_204_NO_CONTENT, headers={"Tus-Resumable": TUS_VERSION}
        )

    return [upload_options, create_upload, upload_offset, append_upload, terminate_upload]
