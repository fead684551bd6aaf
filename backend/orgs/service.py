"""Org logic: create, list, rename and delete orgs.

Each concern is a service of its own over ``OrgCore`` (roles and the membership checks every
operation makes): ``Orgs`` here (the org's own lifecycle), ``Members`` (roles, removal,
leaving) and ``Invitations`` (by mail, and joining by one); a route is given the one it uses,
as auth's are (decision 0022). An org always keeps at least one owner; an org you are not in is
404, never 403.
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, select

from backend.auth.access import forget_session_states
from backend.auth.models import AuthSession, Org, OrgMember
from backend.auth.revocations import publish_access_change
from backend.auth.standing import require_verified
from backend.db.transactions import after_commit
from backend.errors import Forbidden
from backend.identity import Principal
from backend.orgs.core import OrgCore, org_view
from backend.orgs.schemas import NewOrg, OrgUpdate, OrgView
from backend.paging import Page, Paging, by_offset, page_by_offset


class Orgs(OrgCore):
    """The org's own lifecycle, over one database session and the app's shared clients."""

    async def create(self, principal: Principal, data: NewOrg) -> OrgView:
        await require_verified(self.db, self.settings, principal.user_id, "create an org")
        org = Org(name=data.name.strip(), created_by=principal.user_id)
        self.db.add(org)
        await self.db.flush()
        self.db.add(OrgMember(org_id=org.id, user_id=principal.user_id, role="owner"))
        await self._activate_if_none(principal, org.id)
        await self.db.flush()
        await self.db.refresh(org)
        view = org_view(org, "owner")
        await self.db.flush()
        return view

    async def list_mine(self, principal: Principal, paging: Paging) -> Page[OrgView]:
        rows = await self.db.execute(
            by_offset(
                select(Org, OrgMember.role)
                .join(OrgMember, OrgMember.org_id == Org.id)
                .where(OrgMember.user_id == principal.user_id)
                .order_by(OrgMember.created_at),
                paging,
            )
        )
        found = page_by_offset(rows.tuples().all(), paging)
        return found.map(lambda row: org_view(*row))

    async def get(self, principal: Principal, org_id: UUID) -> OrgView:
        member = await self._require_member(principal, org_id)
        org = await self.db.get(Org, org_id)
        assert org is not None
        return org_view(org, member.role)

    async def rename(self, principal: Principal, org_id: UUID, data: OrgUpdate) -> OrgView:
        member = await self._require_manager(principal, org_id)
        org = await self.db.get(Org, org_id)
        assert org is not None
        org.name = data.name.strip()
        view = org_view(org, member.role)
        await self.db.flush()
        return view

    async def delete(self, principal: Principal, org_id: UUID) -> None:
        """Delete the org and, by the database's foreign keys, its members, invitations and
        every collection record in it (each delete reaches the outbox, so realtime, webhooks
        and vector sync see it). Sessions and API keys acting in it lose it at their next
        token; jobs and schedules stay with their owners, without an org."""
        member = await self._require_member(principal, org_id)
        if member.role != "owner":
            raise Forbidden("Only the org's owners may delete it", code="forbidden")
        await self._lock_org(org_id)
        members = (
            await self.db.scalars(select(OrgMember.user_id).where(OrgMember.org_id == org_id))
        ).all()
        acting = (
            await self.db.scalars(select(AuthSession.id).where(AuthSession.org_id == org_id))
        ).all()
        await self.db.execute(delete(Org).where(Org.id == org_id))  # budget override: trigger

        async def tokens_stop() -> None:
            # Tokens naming the org stop at once: their sessions act in none now.
            await forget_session_states(self.redis, acting)
            for user_id in members:  # here at once, other processes as they hear; sockets close
                self.states.forget_user(user_id)
                await publish_access_change(self.redis, "member", user_id, org_id)

        after_commit(self.db, tokens_stop)
