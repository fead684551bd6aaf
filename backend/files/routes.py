"""HTTP routes under /files: downloading a record's file, file tokens for ``?token=``, and
resumable uploads (backend/files/resumable_routes.py).

- ``GET /files/{collection}/{record}/{name}``: anyone; a protected field's file needs a caller
  who may view the record — a bearer (access token or API key) or ``?token=`` (a file token).
  Streamed, with ``Range``, ``ETag`` (the file's SHA-256) and ``If-None-Match``. ``HEAD``: the
  same headers under the same rules, without the bytes.
- ``POST /files/token``: a signed-in person (a session; API keys send themselves as the
  bearer instead). Answers a token valid for FILES_TOKEN_TTL_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Request, Response, Router, get, head, post
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_206_PARTIAL_CONTENT, HTTP_304_NOT_MODIFIED

from backend.auth.deps import asks_who_calls, auth_core_for, principal_of
from backend.auth.limits import count_request
from backend.auth.sessions import Sessions
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.errors import Forbidden, NotFound, invalid_field
from backend.files.downloads import INLINE_TYPES, FileReads, FileToRead, byte_range
from backend.files.models import thumb_key
from backend.files.resumable_routes import resumable_routes
from backend.files.storage import Storage
from backend.files.thumbs import NotThumbnailable, ThumbMaker, thumb_type
from backend.files.tokens import FileScope, issue_file_token, read_file_token
from backend.identity import Principal
from backend.problems import Problem, may_answer

log = logging.getLogger(__name__)


class FileToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    expires_in: int


@asks_who_calls
async def provide_file_reader(request: Request[Any, Any, Any]) -> Principal | None:
    """Who reads: the bearer when there is one; else the user of ``?token=`` (a file token,
    its session still active, counted against that user's rate); else nobody."""
    token = request.query_params.get("token")
    if not token or request.headers.get("authorization"):
        return await principal_of(request)
    state = request.app.state
    settings: Settings = state.settings
    claims, scope = read_file_token(token, settings, state.clock.now())
    async with owned_session(state.database) as db:
        sessions = Sessions.over(auth_core_for(db, state, settings))
        principal = await sessions.session_principal(claims)
    params = request.path_params
    if not scope.admits(params["collection"], params["record_id"], params["name"]):
        raise NotFound("No such file", code="not_found")
    await count_request(
        state.redis, settings, principal, request.client.host if request.client else None
    )
    return principal


def _disposition(file: FileToRead, download: bool) -> str:
    kind = "inline" if file.content_type in INLINE_TYPES and not download else "attachment"
    return f'{kind}; filename="{file.name}"'


def _headers(file: FileToRead, download: bool) -> dict[str, str]:
    return {
        "ETag": file.etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": _disposition(file, download),
        "X-Content-Type-Options": "nosniff",
        # A stored file never changes (a new upload gets a new name): keep public ones, and
        # ask again for protected ones (the caller's right to read them may have ended).
        "Cache-Control": "private, no-cache"
        if file.protected
        else "public, max-age=31536000, immutable",
        # Nothing a file holds runs: PDFs are left alone (Chromium does not show a sandboxed one).
        **(
            {} if file.content_type == "application/pdf" else {"Content-Security-Policy": "sandbox"}
        ),
    }


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _thumb_of(
    file: FileToRead, size: str, storage: Storage, maker: ThumbMaker, collection: str, record: UUID
) -> FileToRead:
    """The thumbnail of ``size`` to serve instead of ``file``: kept in storage, or made now and
    kept. The file itself when it is not an image a thumbnail can be made of."""
    kind = thumb_type(file.content_type)
    if kind is None:
        return file
    key = thumb_key(collection, record, size, file.name)
    etag = f'"{file.etag.strip(chr(34))}-{size}"'
    kept = await storage.head(key)
    if kept is None:
        try:
            made = await maker.make(await storage.read(file.key), file.content_type, size)
        except NotThumbnailable as exc:
            log.info("no %s thumbnail of %s: %s", size, file.key, exc)
            return file
        except FileNotFoundError:
            raise NotFound("No such file", code="not_found") from None
        kept = await storage.put(key, _once(made))
    return replace(file, key=key, content_type=kind, size=kept.size, etag=etag)


# The query of GET and HEAD on a file.
TokenQuery = Annotated[
    str | None, Parameter(required=False, description="A file token from POST /files/token")
]
AsDownload = Annotated[bool, Parameter(description="Answer as an attachment, not inline")]
ThumbSize = Annotated[
    str | None,
    Parameter(
        required=False,
        pattern=r"^[0-9]{1,4}x[0-9]{1,4}$",
        description="A thumbnail of this size (one the field declares) of an image or a PDF",
    ),
]


def file_routers(
    registry: CollectionRegistry, rules: dict[str, CompiledRules], settings: Settings
) -> list[Router]:
    maker = ThumbMaker(settings.files_thumb_concurrency, settings.files_thumb_max_pixels)

    async def answer_for(
        collection: str,
        record_id: UUID,
        name: str,
        request: Request[Any, Any, Any],
        who_reads: Principal | None,
        download: bool,
        thumb: str | None,
        with_body: bool,
    ) -> Stream | Response[None]:
        """GET's answer, or HEAD's (the same headers, no body and nothing opened)."""
        state = request.app.state
        file = await FileReads(state.reader, registry, rules, state.clock).locate(
            collection, record_id, name, who_reads
        )
        storage: Storage = state.storage
        if thumb is not None:
            sizes = registry.get(collection).file_fields[file.field].thumbs  # type: ignore[union-attr]
            if thumb not in sizes:
                raise invalid_field(
                    f"{file.field} makes thumbnails of {', '.join(sizes) or 'no size'}",
                    "thumb",
                    "not a size the field declares",
                    "query",
                )
            file = await _thumb_of(file, thumb, storage, maker, collection, record_id)
        headers = _headers(file, download)
        if request.headers.get("if-none-match") == file.etag:
            return Stream([], status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range != file.etag:
            wanted = None
        try:
            span = byte_range(wanted, file.size)
        except ValueError:
            raise Problem(
                416,
                "The range is not within the file",
                headers={"Content-Range": f"bytes */{file.size}"},
            ) from None
        status = HTTP_206_PARTIAL_CONTENT if span is not None else HTTP_200_OK
        if not with_body:
            first, last = span if span is not None else (0, file.size - 1)
            headers["Content-Length"] = str(last - first + 1)
            headers["Content-Type"] = file.content_type
            if span is not None:
                headers["Content-Range"] = f"bytes {first}-{last}/{file.size}"
            return Response(None, status_code=status, headers=headers)
        try:
            if span is None:
                opened = await storage.open(file.key)
            else:
                opened = await storage.open(file.key, span[0], span[1] + 1)
        except FileNotFoundError:
            raise NotFound("No such file", code="not_found") from None
        headers["Content-Length"] = str(opened.end - opened.start)
        if span is not None:
            headers["Content-Range"] = f"bytes {opened.start}-{opened.end - 1}/{opened.object.size}"
        return Stream(
            opened.chunks, status_code=status, media_type=file.content_type, headers=headers
        )

    @get(
        "/{collection:str}/{record_id:uuid}/{name:str}",
        operation_id="get_file",
        summary="A record's file (Range, ETag); protected files need the bearer or ?token=",
        opt=may_answer(416),
        responses={
            206: ResponseSpec(None, description="The asked range of the file (Range)"),
            304: ResponseSpec(None, description="Not modified (If-None-Match)"),
        },
    )
    async def get_file(
        collection: str,
        record_id: UUID,
        name: str,
        request: Request[Any, Any, Any],
        who_reads: Principal | None,
        token: TokenQuery = None,
        download: AsDownload = False,
        thumb: ThumbSize = None,
    ) -> Stream:
        answer = await answer_for(
            collection, record_id, name, request, who_reads, download, thumb, with_body=True
        )
        assert isinstance(answer, Stream)
        return answer

    @head(
        "/{collection:str}/{record_id:uuid}/{name:str}",
        operation_id="head_file",
        summary="A record's file's headers (size, type, ETag) without its bytes; GET's rules",
        opt=may_answer(416),
        responses={
            206: ResponseSpec(None, description="The asked range of the file (Range)"),
            304: ResponseSpec(None, description="Not modified (If-None-Match)"),
        },
    )
    async def head_file(
        collection: str,
        record_id: UUID,
        name: str,
        request: Request[Any, Any, Any],
        who_reads: Principal | None,
        token: TokenQuery = None,
        download: AsDownload = False,
        thumb: ThumbSize = None,
    ) -> Response[None]:
        answer = await answer_for(
            collection, record_id, name, request, who_reads, download, thumb, with_body=False
        )
        if isinstance(answer, Stream):  # 304
            return Response(None, status_code=answer.status_code, headers=dict(answer.headers))
        return answer

    @post(
        "/token",
        operation_id="post_files_token",
        summary="A short-lived token for ?token= on downloads (<img src>), as the signed-in user",
        status_code=200,
    )
    async def file_token(
        current: Principal,
        settings: Settings,
        request: Request[Any, Any, Any],
        data: FileScope | None = None,
    ) -> FileToken:
        if current.session_id is None:
            raise Forbidden(
                "File tokens are for signed-in sessions; an API key sends itself as the bearer",
                code="forbidden",
            )
        scope = data or FileScope()
        scope.check()
        return FileToken(
            token=issue_file_token(settings, current, scope, request.app.state.clock.now()),
            expires_in=settings.files_token_ttl_seconds,
        )

    return [
        Router(
            "/files",
            route_handlers=[get_file, head_file, file_token, *resumable_routes()],
            tags=["files"],
            dependencies={"who_reads": Provide(provide_file_reader)},
        )
    ]
