"""Admin: list, change, disable and delete users; create the first admin."""

from __future__ import annotations

import asyncio
from uuid import UUID

from advanced_alchemy.filters import (
    CollectionFilter,
    LimitOffset,
    OrderBy,
    SearchFilter,
    StatementFilter,
)
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.core import (
    AuthCore,
    UserService,
)
from backend.auth.deletion import AccountDeletion
from backend.auth.models import User
from backend.auth.revoking import Revoker
from backend.auth.schemas import (
    AdminUserUpdate,
)
from backend.auth.secrets import passwords_for
from backend.auth.two_factor import turn_off_totp
from backend.config import Settings
from backend.errors import NotFound
from backend.paging import Page, Paging, offset_of, page_by_offset


async def ensure_admin(db: AsyncSession, settings: Settings, email: str, password: str) -> User:
    """Create an admin with this email, or make the existing user an admin with this password."""
    users = UserService(session=db)
    user = await users.get_by_email(email)
    password_hash = await asyncio.to_thread(passwords_for(settings).hash, password)
    if user is None:
        user = User(email=email.strip(), password_hash=password_hash, role="admin")
        db.add(user)
    else:
        user.role, user.password_hash, user.disabled = "admin", password_hash, False
    user.email_verified = True
    await db.flush()
    return user


class Admin:
    """Admins' operations on users."""

    def __init__(self, core: AuthCore, revoker: Revoker, deletion: AccountDeletion) -> None:
        self.core = core
        self.revoker = revoker
        self.deletion = deletion

    @classmethod
    def over(cls, core: AuthCore) -> Admin:
        """The service over ``core``, with its collaborators made over it too."""
        revoker = Revoker(core)
        return cls(core, revoker, AccountDeletion(core, revoker))

    async def admin_delete_user(self, user_id: UUID) -> None:
        user = await self.core.db.get(User, user_id)
        if user is None:
            raise NotFound("No such user", code="not_found")
        await self.deletion.delete(user)

    async def list_users(
        self, paging: Paging, *, search: str | None = None, role: str | None = None
    ) -> tuple[Page[User], int]:
        """Users, oldest first, and how many match; ``search`` matches email or name (any case,
        wildcards literal)."""
        filters: list[StatementFilter] = [
            OrderBy("created_at", "asc"),
            LimitOffset(limit=paging.limit + 1, offset=offset_of(paging)),
        ]
        if search:
            filters.append(
                SearchFilter({"email", "name"}, search, ignore_case=True, escape_wildcards=True)
            )
        if role:
            filters.append(CollectionFilter("role", [role]))
        users, total = await self.core.users.list_and_count(*filters)
        return page_by_offset(users, paging), total

    async def admin_update_user(self, user_id: UUID, data: AdminUserUpdate) -> User:
        user = await self.core.db.get(User, user_id)
        if user is None:
            raise NotFound("No such user", code="not_found")
        if data.role is not None and data.role != user.role:
            user.role = data.role
            # Access tokens carry the role: make the user sign in again to pick it up.
            await self.revoker.revoke_sessions_of(user.id)
            await self.revoker.revoke_keys_of(user.id)
        if data.reset_totp:
            await turn_off_totp(self.core.db, user)
        if data.disabled is not None:
            user.disabled = data.disabled
            if data.disabled:
                await self.revoker.revoke_sessions_of(user.id)
                await self.revoker.revoke_keys_of(user.id)
        await self.core.db.flush()
        return user
