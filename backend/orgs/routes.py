"""HTTP routes for /orgs and /invitations."""

from __future__ import annotations

from functools import partial
from typing import TypeVar
from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.deps import BEARER
from backend.auth.mailed import MailedTokens
from backend.config import Settings
from backend.identity import Principal
from backend.orgs.core import OrgCore
from backend.orgs.invitations import Invitations
from backend.orgs.members import Members
from backend.orgs.schemas import (
    AcceptInvitation,
    InvitationView,
    MemberUpdate,
    MemberView,
    NewInvitation,
    NewOrg,
    OrgUpdate,
    OrgView,
)
from backend.orgs.service import Orgs
from backend.paging import Page, Paging

Service = TypeVar("Service", bound=OrgCore)


def _provider(kind: type[Service]) -> Provide:
    """The dependency that gives a route the org service ``kind``, over this request's session."""

    async def provide(db_session: AsyncSession, state: State, settings: Settings) -> Service:
        return kind(
            db_session, settings, state.clock, state.mailer, state.redis, state.session_states
        )

    return Provide(provide)


SERVICES = {
    "org_service": _provider(Orgs),
    "member_service": _provider(Members),
    "invitation_service": _provider(Invitations),
}


class OrgController(Controller):
    path = "/orgs"
    tags = ["orgs"]
    security = BEARER
    dependencies = SERVICES

    @post("/", summary="Create an org; you become its owner")
    async def create(self, data: NewOrg, current: Principal, org_service: Orgs) -> OrgView:
        return await org_service.create(current, data)

    @get("/", summary="The orgs I belong to")
    async def mine(self, current: Principal, org_service: Orgs, paging: Paging) -> Page[OrgView]:
        return await org_service.list_mine(current, paging)

    @get("/{org_id:uuid}", summary="An org I belong to, with my role in it")
    async def one(self, org_id: UUID, current: Principal, org_service: Orgs) -> OrgView:
        return await org_service.get(current, org_id)

    @patch("/{org_id:uuid}", summary="Rename an org (owners and admins)")
    async def rename(
        self, org_id: UUID, data: OrgUpdate, current: Principal, org_service: Orgs
    ) -> OrgView:
        return await org_service.rename(current, org_id, data)

    @delete(
        "/{org_id:uuid}",
        summary="Delete an org with its members, invitations and records (owners)",
    )
    async def delete_org(self, org_id: UUID, current: Principal, org_service: Orgs) -> None:
        await org_service.delete(current, org_id)

    @get("/{org_id:uuid}/members", summary="Members of an org I belong to")
    async def members(
        self, org_id: UUID, current: Principal, member_service: Members, paging: Paging
    ) -> Page[MemberView]:
        return await member_service.members(current, org_id, paging)

    @patch("/{org_id:uuid}/members/{user_id:uuid}", summary="Change a member's role")
    async def change_role(
        self,
        org_id: UUID,
        user_id: UUID,
        data: MemberUpdate,
        current: Principal,
        member_service: Members,
    ) -> MemberView:
        return await member_service.change_role(current, org_id, user_id, data.role)

    @delete("/{org_id:uuid}/members/{user_id:uuid}", summary="Remove a member (or leave)")
    async def remove(
        self, org_id: UUID, user_id: UUID, current: Principal, member_service: Members
    ) -> None:
        await member_service.remove_member(current, org_id, user_id)

    @post("/{org_id:uuid}/invitations", summary="Invite someone by email")
    async def invite(
        self,
        org_id: UUID,
        data: NewInvitation,
        current: Principal,
        invitation_service: Invitations,
    ) -> InvitationView:
        return await invitation_service.invite(current, org_id, data)

    @get("/{org_id:uuid}/invitations", summary="Invitations of an org (owners and admins)")
    async def invitations(
        self, org_id: UUID, current: Principal, invitation_service: Invitations, paging: Paging
    ) -> Page[InvitationView]:
        return await invitation_service.invitations(current, org_id, paging)

    @delete(
        "/{org_id:uuid}/invitations/{invitation_id:uuid}",
        summary="Revoke a pending invitation (owners and admins)",
    )
    async def revoke_invitation(
        self,
        org_id: UUID,
        invitation_id: UUID,
        current: Principal,
        invitation_service: Invitations,
    ) -> None:
        await invitation_service.revoke_invitation(current, org_id, invitation_id)


class InvitationController(Controller):
    path = "/invitations"
    tags = ["orgs"]
    security = BEARER
    dependencies = SERVICES

    @post(
        "/accept",
        summary="Accept an invitation sent to my email (the token in the body, never the URL)",
        status_code=200,
    )
    async def accept(
        self,
        data: AcceptInvitation,
        current: Principal,
        invitation_service: Invitations,
        mailed_token_service: MailedTokens,
    ) -> OrgView:
        # This session stays; the account's others end if it was unverified.
        proof = partial(mailed_token_service.prove_mailbox, keep=current.session_id)
        return await invitation_service.accept(current, data.token, proof)
