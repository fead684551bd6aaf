"""API keys: create (scoped, never wider than the key that makes one), list, revoke."""

from __future__ import annotations

from functools import partial
from uuid import UUID

import msgspec
from sqlalchemy import select

from backend.auth.core import AuthCore
from backend.auth.models import ApiKey
from backend.auth.revocations import (
    publish_access_change,
)
from backend.auth.schemas import (
    ApiKeyView,
    CreatedApiKey,
    NewApiKey,
)
from backend.auth.scopes import DEFAULT_SCOPES
from backend.auth.secrets import (
    API_KEY_PREFIX,
    hash_token,
    new_token,
)
from backend.auth.standing import require_verified
from backend.db.transactions import after_commit
from backend.errors import (
    Forbidden,
    Invalid,
    NotFound,
)
from backend.identity import Principal
from backend.inputs import utc_field
from backend.paging import Page, Paging, by_offset, page_by_offset


def _scope_problem(field: str, message: str) -> Invalid:
    return Invalid(
        f"The new key's {field} are {message}",
        errors=[{"field": field, "message": message, "source": "body"}],
    )


def api_key_view(key: ApiKey) -> ApiKeyView:
    view = msgspec.convert(key, ApiKeyView, from_attributes=True)
    return msgspec.structs.replace(view, service=key.is_service)  # the column's name differs


class ApiKeys:
    """API keys: create (scoped), list, revoke."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    @classmethod
    def over(cls, core: AuthCore) -> ApiKeys:
        """The service over ``core`` (it needs no other)."""
        return cls(core)

    async def create_api_key(
        self, principal: Principal, data: NewApiKey, served: frozenset[str]
    ) -> CreatedApiKey:
        """A key for the caller; ``served``: the collections an allow-list may name."""
        if data.service and not principal.is_admin:
            raise Forbidden("Only admins can create service keys", code="forbidden")
        await require_verified(
            self.core.db, self.core.settings, principal.user_id, "create API keys"
        )
        scopes = sorted(set(data.scopes or DEFAULT_SCOPES))
        collections = None if data.collections is None else sorted(set(data.collections))
        for index, name in enumerate(data.collections or ()):
            if name not in served:
                raise Invalid(
                    f"No collection is named {name!r}",
                    errors=[
                        {
                            "field": f"collections[{index}]",
                            "message": "no such collection",
                            "source": "body",
                        }
                    ],
                )
        if principal.scopes is not None:  # a key minting a key: never wider than itself
            if "keys" not in principal.scopes:
                raise Forbidden(
                    "This API key may not create keys (no 'keys' scope)", code="forbidden"
                )
            if not set(scopes) <= principal.scopes:
                raise _scope_problem("scopes", "wider than the key that creates it")
            if principal.collections is not None and (
                collections is None or not set(collections) <= principal.collections
            ):
                raise _scope_problem("collections", "wider than the key that creates it")
        now = self.core.clock.now()
        expires_at = None if data.expires_at is None else utc_field(data.expires_at, "expires_at")
        if expires_at is not None and expires_at <= now:
            raise Invalid(
                "expires_at must be in the future",
                errors=[{"field": "expires_at", "message": "in the past", "source": "body"}],
            )
        org_id = data.org_id or principal.org_id
        if org_id is not None:  # the token's org too: membership may have ended since
            await self.core.require_membership(principal.user_id, org_id)
        secret = new_token(API_KEY_PREFIX)
        key = ApiKey(
            user_id=principal.user_id,
            name=data.name.strip(),
            prefix=secret[:10],
            key_hash=hash_token(secret),
            is_service=data.service,
            org_id=org_id,
            expires_at=expires_at,
            scopes=scopes,
            collections=collections,
        )
        self.core.db.add(key)
        await self.core.db.flush()
        await self.core.db.refresh(key)
        view = api_key_view(key)
        await self.core.db.flush()
        return CreatedApiKey(key=secret, api_key=view)

    async def list_api_keys(self, principal: Principal, paging: Paging) -> Page[ApiKeyView]:
        keys = await self.core.db.scalars(
            by_offset(
                select(ApiKey)
                .where(ApiKey.user_id == principal.user_id, ApiKey.revoked_at.is_(None))
                .order_by(ApiKey.created_at),
                paging,
            )
        )
        return page_by_offset(keys.all(), paging).map(api_key_view)

    async def revoke_api_key(self, principal: Principal, key_id: UUID) -> None:
        key = await self.core.db.get(ApiKey, key_id)
        if key is None or key.user_id != principal.user_id or key.revoked_at is not None:
            raise NotFound("No such API key", code="not_found")
        key.revoked_at = self.core.clock.now()
        await self.core.db.flush()
        after_commit(self.core.db, partial(publish_access_change, self.core.redis, "key", key.id))
