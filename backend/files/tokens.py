"""File tokens: short-lived signed tokens for ``?token=`` on a download, where a browser's
``<img src>`` cannot send Authorization (like PocketBase's).

A file token carries its session's claims (user, session, org) under its own audience
(``<JWT_AUDIENCE>:files``), so it is never taken as an access token nor an access token as it;
it lasts FILES_TOKEN_TTL_SECONDS, and is honoured only while its session is active. It may be
narrowed to one collection, one record, or one file of a record.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import jwt
import msgspec

from backend.auth.secrets import JWT_ALGORITHM, AccessClaims
from backend.config import Settings
from backend.errors import Invalid, Unauthenticated
from backend.identity import Principal


class FileScope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a token may open: every file its user may view (all None), or only those of one
    collection, one record of it, or one file of that record."""

    collection: str | None = None
    record: UUID | None = None
    name: str | None = None

    def check(self) -> None:
        if self.record is not None and self.collection is None:
            raise Invalid(
                "A token for a record names its collection too",
                errors=[
                    {"field": "collection", "message": "required with record", "source": "body"}
                ],
            )
        if self.name is not None and self.record is None:
            raise Invalid(
                "A token for a file names its record too",
                errors=[{"field": "record", "message": "required with name", "source": "body"}],
            )

    def admits(self, collection: str, record: UUID, name: str) -> bool:
        return (
            (self.collection is None or self.collection == collection)
            and (self.record is None or self.record == record)
            and (self.name is None or self.name == name)
        )


class _FileClaims(msgspec.Struct, frozen=True, kw_only=True):
    c: str | None = None
    r: UUID | None = None
    n: str | None = None


def _audience(settings: Settings) -> str:
    return f"{settings.jwt_audience}:files"


def issue_file_token(
    settings: Settings, principal: Principal, scope: FileScope, now: datetime
) -> str:
    assert principal.session_id is not None
    claims = {
        "sub": str(principal.user_id),
        "sid": str(principal.session_id),
        "role": principal.role,
        "org": str(principal.org_id) if principal.org_id else None,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=settings.files_token_ttl_seconds)).timestamp()),
        "iss": settings.jwt_issuer,
        "aud": _audience(settings),
        "c": scope.collection,
        "r": str(scope.record) if scope.record else None,
        "n": scope.name,
    }
    return jwt.encode(claims, settings.secret_key, algorithm=JWT_ALGORITHM)


def read_file_token(
    token: str, settings: Settings, now: datetime
) -> tuple[AccessClaims, FileScope]:
    """The session claims and scope of a file token; 401 (``invalid_token``) for one that is
    not a file token of this server, or has expired."""
    try:
        payload = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[JWT_ALGORITHM],
            audience=_audience(settings),
            issuer=settings.jwt_issuer,
            # Expiry against the app's clock, below, so tests can move time.
            options={"require": ["exp", "iat", "sub", "sid"], "verify_exp": False},
        )
        claims = msgspec.convert(payload, AccessClaims)
        narrowed = msgspec.convert(payload, _FileClaims)
    except (jwt.PyJWTError, msgspec.ValidationError):
        raise Unauthenticated("The file token is not valid", code="invalid_token") from None
    if claims.exp <= now.timestamp():
        raise Unauthenticated("The file token has expired; ask for another", code="token_expired")
    return claims, FileScope(collection=narrowed.c, record=narrowed.r, name=narrowed.n)
