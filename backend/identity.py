"""Who is calling: the small identity types every capability shares.

A leaf module: it imports nothing of Litebase, so collections, realtime, jobs, vectors, the
gateway and the workers can all know the caller without importing the auth service (which
would make each of them depend on sessions, keys and mail). backend/auth makes Principals;
everything else only reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import msgspec


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: a user through a session's access token, or through an API key."""

    user_id: UUID
    role: str
    org_id: UUID | None
    session_id: UUID | None = None
    api_key_id: UUID | None = None
    is_service: bool = False
    # A user made by grant_type anonymous (the access token's ``is_anonymous`` claim):
    # ``@auth.anonymous`` in rules.
    is_anonymous: bool = False
    expires_at: int | None = None  # when the credential stops working (Unix seconds)
    # An API key's scopes and collection allow-list (backend/auth/scopes.py); None for a
    # session, which is not scoped.
    scopes: frozenset[str] | None = None
    collections: frozenset[str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def bypasses_rules(self) -> bool:
        """Admins and service keys are not subject to collection rules."""
        return self.is_admin or self.is_service


@dataclass(frozen=True)
class ClientInfo:
    ip: str | None = None
    user_agent: str | None = None
