"""HTTP: sign-in, tokens that refresh themselves, collections, and the pages of any list."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote, urlencode

import httpx

if TYPE_CHECKING:
    from litebase_client.realtime import Realtime

REFRESH_MARGIN_SECONDS = 30


class ApiError(Exception):
    """A problem+json answer: ``status``, ``detail`` and the whole ``problem``."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA-256(verifier)), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Litebase:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self.api_key = api_key
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.user: dict[str, Any] | None = None
        self._expires_at = 0.0
        self._refreshing = asyncio.Lock()

    async def __aenter__(self) -> Litebase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    # --- auth ------------------------------------------------------------------------------

    def _keep(self, tokens: dict[str, Any]) -> dict[str, Any]:
        self.access_token = tokens["access_token"]
        self.refresh_token = tokens["refresh_token"]
        self.user = tokens["user"]
        self._expires_at = time.monotonic() + tokens["expires_in"]
        return tokens

    async def sign_up(
        self, email: str, password: str, name: str | None = None, locale: str | None = None
    ) -> dict[str, Any]:
        """Create an account and sign in; ``locale`` (e.g. "de") is the language of its mails."""
        body = {"email": email, "password": password}
        body |= {"name": name} if name else {}
        body |= {"locale": locale} if locale else {}
        return self._keep(await self._call("POST", "/auth/signup", json=body, auth=False))

    async def sign_in(self, email: str, password: str, org_id: str | None = None) -> dict[str, Any]:
        body = {"grant_type": "password", "email": email, "password": password}
        if org_id:
            body["org_id"] = org_id
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def send_sign_in_code(self, email: str) -> None:
        """Mail a one-time sign-in code to ``email`` (the server answers the same either way)."""
        await self._call("POST", "/auth/otp", json={"email": email}, auth=False)

    async def sign_in_with_code(
        self, email: str, code: str, org_id: str | None = None
    ) -> dict[str, Any]:
        body = {"grant_type": "otp", "email": email, "code": code}
        if org_id:
            body["org_id"] = org_id
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def sign_in_with_totp(self, mfa_token: str, code: str) -> dict[str, Any]:
        """The second step when two-factor sign-in is on: ``sign_in`` (or
        ``sign_in_with_code``) raised ``ApiError`` 401 ``mfa_required`` with an ``mfa_token``
        in its problem; send it with the authenticator app's code."""
        body = {"grant_type": "mfa", "mfa_token": mfa_token, "code": code}
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def sign_in_with_recovery_code(
        self, mfa_token: str, recovery_code: str
    ) -> dict[str, Any]:
        """The second step with one of the account's recovery codes instead of the app's code
        (a lost phone): each works once, and the account is mailed about it."""
        body = {"grant_type": "mfa", "mfa_token": mfa_token, "recovery_code": recovery_code}
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def enable_totp(self, code: str) -> dict[str, Any]:
        """Two-factor sign-in on (after ``POST /auth/mfa/totp``): the user, with its ten
        ``recovery_codes``, shown this once."""
        enabled: dict[str, Any] = await self._call(
            "POST", "/auth/mfa/totp/enable", json={"code": code}
        )
        return enabled

    async def regenerate_recovery_codes(
        self, *, code: str | None = None, recovery_code: str | None = None
    ) -> list[str]:
        """Ten new recovery codes for the old ones; proven by the app's ``code`` or a
        ``recovery_code``."""
        proof = {"code": code} if code is not None else {"recovery_code": recovery_code}
        answer = await self._call("POST", "/auth/mfa/recovery-codes", json=proof)
        codes: list[str] = answer["recovery_codes"]
        return codes

    async def two_factor_status(self) -> dict[str, Any]:
        """``{"totp_enabled": …, "recovery_codes_left": …}``."""
        status: dict[str, Any] = await self._call("GET", "/auth/mfa")
        return status

    async def sign_in_anonymously(self) -> dict[str, Any]:
        """A new anonymous user, signed in (when the server has AUTH_ANONYMOUS_ENABLED)."""
        body = {"grant_type": "anonymous"}
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def convert_account(self, email: str, password: str, name: str | None = None) -> None:
        """Keep the signed-in anonymous account: ``email`` gets a token, and ``confirm_email``
        with it sets the email and password and makes the account permanent."""
        body = {"email": email, "password": password, **({"name": name} if name else {})}
        await self._call("POST", "/auth/convert", json=body)

    async def confirm_email(self, token: str) -> dict[str, Any]:
        """Confirm an address with its mailed token; when it is this client's account, its
        session is refreshed so the new token says so (``is_anonymous``)."""
        user: dict[str, Any] = await self._call(
            "POST", "/auth/email/confirm", json={"token": token}, auth=False
        )
        if self.user is not None and self.user["id"] == user["id"] and self.refresh_token:
            await self.refresh()
        return user

    # --- sign-in with a provider (OAuth 2.0 / OpenID Connect) --------------------------------

    def oauth_authorize_url(
        self, provider: str, redirect_to: str, *, code_verifier: str | None = None
    ) -> tuple[str, str]:
        """(the URL to send the browser to, the PKCE code_verifier to keep for the exchange).
        The browser comes back to ``redirect_to`` (in the server's AUTH_REDIRECT_URLS) with
        ``?code=``: give it to ``exchange_oauth_code`` with the verifier."""
        verifier = code_verifier or secrets.token_urlsafe(48)
        query = urlencode(
            {
                "redirect_to": redirect_to,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{self.base_url}/auth/oauth/{quote(provider, safe='')}/authorize?{query}", verifier

    async def exchange_oauth_code(
        self, code: str, code_verifier: str, org_id: str | None = None
    ) -> dict[str, Any]:
        """Sign in with the one-time ``code`` a provider's trip brought back (it works once)."""
        body = {"grant_type": "oauth_code", "code": code, "code_verifier": code_verifier}
        if org_id:
            body["org_id"] = org_id
        return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def link_identity_url(self, provider: str, redirect_to: str) -> tuple[str, str]:
        """Link a provider to the signed-in account: (the URL to send the browser to, the
        verifier); the code it comes back with goes to ``exchange_oauth_code``."""
        verifier = secrets.token_urlsafe(48)
        body = {"redirect_to": redirect_to, "code_challenge": pkce_challenge(verifier)}
        started = await self._call(
            "POST", f"/auth/identities/{quote(provider, safe='')}/link", json=body
        )
        return str(started["url"]), verifier

    async def identities(self) -> list[dict[str, Any]]:
        """My linked provider accounts."""
        return [identity async for identity in self.pages("/auth/identities")]

    async def unlink_identity(self, identity_id: str) -> None:
        await self._call("DELETE", f"/auth/identities/{identity_id}")

    async def me(self) -> dict[str, Any]:
        user: dict[str, Any] = await self._call("GET", "/auth/me")
        return user

    async def delete_account(self, password: str | None = None) -> None:
        """Delete the signed-in account (see DELETE /auth/me; an anonymous one that has no
        password needs none); the client is signed out."""
        await self._call(
            "DELETE", "/auth/me", json={} if password is None else {"password": password}
        )
        self.access_token = self.refresh_token = None

    async def refresh(self, org_id: str | None = None) -> dict[str, Any]:
        """Trade the refresh token for a new pair (concurrent callers share one refresh)."""
        async with self._refreshing:
            body: dict[str, Any] = {
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
            }
            if org_id:
                body["org_id"] = org_id
            return self._keep(await self._call("POST", "/auth/token", json=body, auth=False))

    async def sign_out(self) -> None:
        await self._call("POST", "/auth/logout")
        self.access_token = self.refresh_token = None

    async def token(self) -> str:
        """A bearer credential that is good for a while yet: refreshed when close to expiry."""
        if self.api_key:
            return self.api_key
        if self.access_token is None:
            raise ApiError(401, {"detail": "not signed in"})
        if self.refresh_token and time.monotonic() > self._expires_at - REFRESH_MARGIN_SECONDS:
            await self.refresh()
        assert self.access_token is not None
        return self.access_token

    # --- calls -----------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, *, auth: bool = True, headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        headers = dict(headers or {})
        if auth and (self.api_key or self.access_token):
            headers["Authorization"] = f"Bearer {await self.token()}"
        response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401 and auth and self.refresh_token and not self.api_key:
            await self.refresh()  # the token died early (clock skew, revocation): try once more
            headers["Authorization"] = f"Bearer {self.access_token}"
            response = await self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise ApiError(response.status_code, problem)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def _tus(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None = None
    ) -> httpx.Response:
        """One tus request with your credential; ApiError for a refusal."""
        headers = {**headers, "Authorization": f"Bearer {await self.token()}"}
        response = await self.http.request(method, path, headers=headers, content=content)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text or response.reason_phrase}
            raise ApiError(response.status_code, problem)
        return response

    async def page(
        self, path: str, *, limit: int | None = None, cursor: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """One page of a list route: ``{"items": [...], "next_cursor": str | None}``."""
        query = {"limit": limit, "cursor": cursor, **params}
        page: dict[str, Any] = await self._call(
            "GET", path, params={k: v for k, v in query.items() if v is not None}
        )
        return page

    async def pages(self, path: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list route (``/jobs``, ``/auth/sessions``, a collection's records…),
        fetched page by page as the loop asks for them."""
        cursor = None
        while True:
            page = await self.page(path, cursor=cursor, **params)
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def collection(self, name: str) -> Collection:
        return Collection(self, name)

    # --- files (docs/files.md) -----------------------------------------------------------

    def file_url(
        self, collection: str, record_id: str, name: str, *, token: str | None = None,
        download: bool = False, thumb: str | None = None,
    ) -> str:  # fmt: skip
        """The URL of a record's file; ``token`` (a file token) for a protected one where no
        header can be sent (an ``<img src>`` in a page you render); ``thumb`` ("100x100", a
        size the field declares) for a thumbnail of an image or of a PDF (its first page)."""
        pairs = (("thumb", thumb), ("token", token), ("download", "true" if download else None))
        query = {k: v for k, v in pairs if v}
        path = "/".join(quote(part, safe="") for part in (collection, record_id, name))
        return f"{self.base_url}/files/{path}" + (f"?{urlencode(query)}" if query else "")

    async def file_token(
        self, *, collection: str | None = None, record: str | None = None, name: str | None = None
    ) -> str:
        """A short-lived file token for ``?token=`` (signed-in sessions; an API key sends
        itself instead), narrowed to a collection, a record or a file when given."""
        scope = {
            k: v for k, v in (("collection", collection), ("record", record), ("name", name)) if v
        }
        issued: dict[str, Any] = await self._call("POST", "/files/token", json=scope)
        return str(issued["token"])

    def realtime(self, **options: Any) -> Realtime:
        from litebase_client.realtime import Realtime

        return Realtime(self, **options)


class Collection:
    def __init__(self, client: Litebase, name: str) -> None:
        self.client = client
        self.name = name
        self.base = f"/collections/{name}"
        self.path = f"{self.base}/records"

    async def list(
        self, *, filter: str | None = None, sort: str | None = None, limit: int | None = None,
        cursor: str | None = None, fields: str | None = None, count: bool = False,
        expand: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        params = {
            "filter": filter,
            "sort": sort,
            "limit": limit,
            "cursor": cursor,
            "fields": fields,
            "expand": expand,
        }
        query = {k: v for k, v in params.items() if v is not None}
        if count:
            query["count"] = "true"
        page: dict[str, Any] = await self.client._call("GET", self.path, params=query)
        return page

    def pages(self, **options: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching record, page by page as the loop asks (``list``'s options)."""
        query = {"count": "true" if options.pop("count", False) else None, **options}
        return self.client.pages(self.path, **query)

    async def all(self, **options: Any) -> list[dict[str, Any]]:
        """Every matching record, following the cursor page by page."""
        return [record async for record in self.pages(**options)]

    async def get(self, record_id: str, *, expand: str | None = None) -> dict[str, Any]:
        params = {"expand": expand} if expand else None
        path = f"{self.path}/{record_id}"
        record: dict[str, Any] = await self.client._call("GET", path, params=params)
        return record

    async def create(
        self, data: dict[str, Any], *, files: Files | None = None,
        on_progress: Progress | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """A new record; ``files`` come with it: ``{"attachments": ["a.pdf", Path("b.png"),
        ("c.txt", b"bytes")]}`` (a path, or a name with bytes or a binary file), streamed from
        disk. ``on_progress(sent, total)`` is called as the body goes."""
        with _body(data, files, on_progress) as body:
            record: dict[str, Any] = await self.client._call("POST", self.path, **body)
        return record

    async def update(
        self, record_id: str, data: dict[str, Any], *, if_match: str | None = None,
        files: Files | None = None, on_progress: Progress | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Change fields; ``files`` are added after the names a file field keeps (``data`` may
        list fewer: the others are removed)."""
        headers = {"If-Match": if_match} if if_match else None
        with _body(data, files, on_progress) as body:
            record: dict[str, Any] = await self.client._call(
                "PATCH", f"{self.path}/{record_id}", headers=headers, **body
            )
        return record

    async def upload_resumable(
        self, record_id: str, field: str, path: str | Path, *, chunk_bytes: int = 50 * 1024**2,
        on_progress: Progress | None = None, retries: int = 3,
    ) -> str:  # fmt: skip
        """The file at ``path`` into the record's file ``field`` over tus (/files/uploads),
        ``chunk_bytes`` per request, read from disk a chunk at a time: a request that breaks
        off is taken up where the server kept it (at most ``retries`` times in a row). The name
        the file got in the field."""
        path = Path(path)
        total = path.stat().st_size
        tus = {"Tus-Resumable": "1.0.0"}
        meta = (("collection", self.name), ("record", record_id), ("field", field),
                ("filename", path.name))  # fmt: skip
        made = await self.client._tus(
            "POST", "/files/uploads",
            {**tus, "Upload-Length": str(total), "Upload-Metadata": ",".join(
                f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta)},
        )  # fmt: skip
        location = made.headers["location"]
        offset, broken = 0, 0
        while True:
            piece = await asyncio.to_thread(_read_piece, path, offset, chunk_bytes)
            try:
                sent = await self.client._tus(
                    "PATCH", location,
                    {**tus, "Upload-Offset": str(offset),
                     "Content-Type": "application/offset+octet-stream"},
                    piece,
                )  # fmt: skip
            except httpx.TransportError:
                broken += 1
                if broken > retries:
                    raise
                offset = int(
                    (await self.client._tus("HEAD", location, tus)).headers["upload-offset"]
                )
                continue
            broken = 0
            offset = int(sent.headers["upload-offset"])
            if on_progress is not None:
                on_progress(offset, total)
            if "litebase-file-name" in sent.headers:
                return str(sent.headers["litebase-file-name"])

    def file_url(
        self, record_id: str, name: str, *, token: str | None = None, thumb: str | None = None
    ) -> str:
        return self.client.file_url(self.name, record_id, name, token=token, thumb=thumb)

    async def download(self, record_id: str, name: str) -> bytes:
        """One of a record's files, read with your credential."""
        headers = {"Authorization": f"Bearer {await self.client.token()}"}
        response = await self.client.http.get(
            self.client.file_url(self.name, record_id, name), headers=headers
        )
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json())
        return response.content

    async def delete(self, record_id: str) -> None:
        await self.client._call("DELETE", f"{self.path}/{record_id}")

    async def batch(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self.client._call(
            "POST", self.path + ":batch", json={"operations": operations}
        )
        return result

    async def search(
        self,
        query: str,
        *,
        mode: str = "hybrid",
        k: int = 10,
        filter: str | None = None,
        min_score: float | None = None,
    ) -> list[dict[str, Any]]:
        """Records by meaning, words or both: ``[{record, score, chunk}]``, best first. A hit
        on one of the record's documents (``Embed(files=[...])``) also names its ``file`` and,
        for a PDF, its ``page`` (from 1); both are absent for a hit on the text fields."""
        body: dict[str, Any] = {"query": query, "mode": mode, "k": k}
        if filter is not None:
            body["filter"] = filter
        if min_score is not None:
            body["min_score"] = min_score
        result: dict[str, Any] = await self.client._call("POST", f"{self.base}/search", json=body)
        items: list[dict[str, Any]] = result["items"]
        return items


def _read_piece(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as source:
        source.seek(offset)
        return source.read(size)


# New files by field: a path, or (filename, bytes or a binary file).
FileSource = str | os.PathLike[str] | tuple[str, bytes | BinaryIO]
Files = dict[str, FileSource | list[FileSource]]
Progress = Callable[[int, int], None]


class _Counted:
    """A binary file whose reads report how far the upload has got."""

    def __init__(self, file: BinaryIO, seen: Callable[[int], None]) -> None:
        self.file = file
        self.seen = seen

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.seen(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:  # httpx rewinds a file it re-sends
        return self.file.seek(offset, whence)


@contextmanager
def _body(
    data: dict[str, Any], files: Files | None, on_progress: Progress | None
) -> Iterator[dict[str, Any]]:
    """httpx's arguments for a JSON body, or, with files, a multipart one: ``data`` as JSON,
    then one part per file (files are streamed from disk, not read whole; those opened here are
    closed when the block ends)."""
    if not files:
        yield {"json": data}
        return
    parts: list[tuple[str, tuple[str, Any]]] = []
    opened: list[BinaryIO] = []
    try:
        for field, given in files.items():
            for source in given if isinstance(given, list) else [given]:
                if isinstance(source, tuple):
                    filename, content = source
                    file = io.BytesIO(content) if isinstance(content, bytes) else content
                else:
                    path = Path(os.fspath(source))
                    filename, file = path.name, path.open("rb")
                    opened.append(file)
                parts.append((field, (filename, file)))
        if on_progress is not None:
            total = sum(_size(file) for _, (_, file) in parts)
            sent = [0]

            def seen(count: int) -> None:
                sent[0] += count
                if count:
                    on_progress(min(sent[0], total), total)

            parts = [(field, (name, _Counted(file, seen))) for field, (name, file) in parts]
        yield {"data": {"data": json.dumps(data)}, "files": parts}
    finally:
        for file in opened:
            file.close()


def _size(file: BinaryIO) -> int:
    here = file.tell()
    file.seek(0, os.SEEK_END)
    size = file.tell() - here
    file.seek(here)
    return size
