"""HTTP routes of /admin: users listed, changed and deleted by an admin (``admin_only``)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, delete, get, patch
from litestar.params import Parameter

from backend.auth.admin import Admin
from backend.auth.core import user_view
from backend.auth.deps import BEARER
from backend.auth.guards import admin_only
from backend.auth.schemas import (
    AdminUserUpdate,
    UserView,
)
from backend.paging import Page, Paging


class UserPage(Page[UserView], frozen=True, kw_only=True):
    total: int  # how many users match, on every page (the count comes with the page's query)


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    security = BEARER
    guards = [admin_only]

    @get("/users", summary="All users (admins only)")
    async def users(
        self,
        admin_service: Admin,
        paging: Paging,
        q: Annotated[
            str | None,
            Parameter(
                required=False,
                max_length=320,
                description="Part of the email or name, in any case",
            ),
        ] = None,
        role: Literal["user", "admin"] | None = None,
    ) -> UserPage:
        users, total = await admin_service.list_users(paging, search=q, role=role)
        page = users.map(user_view)
        return UserPage(items=page.items, next_cursor=page.next_cursor, total=total)

    @delete(
        "/users/{user_id:uuid}",
        summary="Delete a user (admins only)",
        description="As DELETE /auth/me does, without the password; 409 `last_owner` the same.",
    )
    async def delete_user(self, user_id: UUID, admin_service: Admin) -> None:
        await admin_service.admin_delete_user(user_id)

    @patch("/users/{user_id:uuid}", summary="Change a user's role or disable them (admins only)")
    async def update_user(
        self, user_id: UUID, data: AdminUserUpdate, admin_service: Admin
    ) -> UserView:
        return user_view(await admin_service.admin_update_user(user_id, data))
