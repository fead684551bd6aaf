"""What Litebase's logic raises when it refuses: domain errors, free of HTTP.

Services, workers and helpers raise these; one place (backend/problems.py) turns each into
problem+json with its status. A worker catches them by kind (``UpstreamFailed``: try again)
rather than by status code. Each carries what the caller should read: a ``detail`` sentence, an
optional machine ``code``, field ``errors`` (``[{field, message, source}]``), ``headers`` the
answer must carry (``Retry-After``) and any extra members of the answer. ``keep_changes``: the
refusal is itself a change, so what was done before it is committed (backend/db/transactions.py).
"""

from __future__ import annotations

import copy
from typing import Any


class DomainError(Exception):
    """A refusal; subclasses say which kind."""

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        keep_changes: bool = False,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.keep_changes = keep_changes
        self.extra = extra

    @property
    def code(self) -> str | None:
        code = self.extra.get("code")
        return None if code is None else str(code)

    def moved(self, detail: str, errors: list[dict[str, Any]]) -> DomainError:
        """The same refusal, told again with another detail and field errors."""
        told = copy.copy(self)
        told.args, told.detail, told.errors = (detail,), detail, errors
        return told


class Invalid(DomainError):
    """The input is wrong; ``errors`` name the fields at fault."""


class Rejected(DomainError):
    """A token or code the request carried is not valid, used or expired."""


class Unauthenticated(DomainError):
    """The caller is not signed in, or the credential no longer holds."""


class Forbidden(DomainError):
    """The caller is known and may not do this."""


class NotFound(DomainError):
    """No such thing, or none the caller may see (the same answer either way)."""


class Conflict(DomainError):
    """The state of things refuses it (the last owner, a name taken, already done)."""


class Stale(DomainError):
    """The caller's copy is older than the stored one (If-Match)."""


class TooLarge(DomainError):
    """The input is larger than a limit allows."""


class Unsupported(DomainError):
    """The input is of a kind the target does not take (a file's type)."""


class TooMany(DomainError):
    """A rate, budget or count limit is reached; ``Retry-After`` says when to try again."""


class UpstreamFailed(DomainError):
    """A provider Litebase called failed or refused (worth another try later)."""


class Broken(DomainError):
    """Litebase or how it is configured is at fault (a template that fails to render)."""


class Unavailable(DomainError):
    """Something Litebase needs is not there now (not configured, not ready)."""


class UpstreamTimeout(DomainError):
    """A provider did not answer in time."""


def invalid_field(detail: str, field: str, message: str, source: str = "body") -> Invalid:
    """An ``Invalid`` naming the one field at fault."""
    return Invalid(detail, errors=[{"field": field, "message": message, "source": source}])
