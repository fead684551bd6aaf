"""An org's members: listing them, changing a member's role, removing a member (or leaving).

An org always keeps at least one owner: the last one can be neither demoted nor removed, and
owner changes are serialised on the org's row. A member removed loses the org at once: their
sessions acting in it act in none, and their tokens naming it stop (here at once, in other
processes as they hear it).
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select

from backend.auth.access import forget_session_states
from backend.auth.models import AuthSession, OrgMember, User
from backend.auth.revocations import publish_access_change
from backend.db.transactions import after_commit
from backend.errors import Conflict, Forbidden, NotFound
from backend.identity import Principal
from backend.orgs.core import OrgCore, as_role
from backend.orgs.schemas import MemberView, OrgRole
from backend.paging import Page, Paging, by_key, page_by_key


class Members(OrgCore):
    """Listing an org's members, changing their roles, removing them."""

    async def _owner_count(self, org_id: UUID) -> int:
        count = await self.db.scalar(
            select(func.count())
            .select_from(OrgMember)
            .where(OrgMember.org_id == org_id, OrgMember.role == "owner")
        )
        return int(count or 0)

    async def members(self, principal: Principal, org_id: UUID, paging: Paging) -> Page[MemberView]:
        await self._require_member(principal, org_id)
        rows = await self.db.execute(
            by_key(
                select(OrgMember, User)
                .join(User, User.id == OrgMember.user_id)
                .where(OrgMember.org_id == org_id),
                paging,
                OrgMember.created_at,
                OrgMember.id,
            )
        )
        found = page_by_key(rows.tuples().all(), paging, lambda row: (row[0].created_at, row[0].id))
        return found.map(lambda row: self._member_view(*row))

    @staticmethod
    def _member_view(member: OrgMember, user: User) -> MemberView:
        return MemberView(
            user_id=user.id,
            email=user.email,
            name=user.name,
            role=as_role(member.role),
            joined_at=member.created_at,
        )

    async def change_role(
        self, principal: Principal, org_id: UUID, user_id: UUID, role: OrgRole
    ) -> MemberView:
        actor = await self._require_manager(principal, org_id)
        await self._lock_org(org_id)
        target = await self._membership(org_id, user_id)
        if target is None:
            raise NotFound("No such member", code="not_found")
        if (target.role == "owner" or role == "owner") and actor.role != "owner":
            raise Forbidden("Only owners may grant or change the owner role", code="forbidden")
        if target.role == "owner" and role != "owner" and await self._owner_count(org_id) <= 1:
            raise Conflict("An org needs at least one owner", code="last_owner")
        target.role = role
        user = await self.db.get(User, user_id)
        assert user is not None
        view = self._member_view(target, user)
        await self.db.flush()
        return view

    async def remove_member(self, principal: Principal, org_id: UUID, user_id: UUID) -> None:
        leaving = user_id == principal.user_id
        actor = await (
            self._require_member(principal, org_id)
            if leaving
            else self._require_manager(principal, org_id)
        )
        await self._lock_org(org_id)
        target = actor if leaving else await self._membership(org_id, user_id)
        if target is None:
            raise NotFound("No such member", code="not_found")
        if target.role == "owner" and not leaving and actor.role != "owner":
            raise Forbidden("Only owners may remove an owner", code="forbidden")
        if target.role == "owner" and await self._owner_count(org_id) <= 1:
            raise Conflict("An org needs at least one owner", code="last_owner")
        await self.db.delete(target)
        # Sessions acting in this org lose it; their next token has no org.
        sessions = await self.db.scalars(
            select(AuthSession).where(AuthSession.user_id == user_id, AuthSession.org_id == org_id)
        )
        acting = []
        for session in sessions:
            session.org_id = None
            acting.append(session.id)
        await self.db.flush()

        async def tokens_stop() -> None:
            # Its access tokens naming the org stop at once, not when they expire.
            await forget_session_states(self.redis, acting)
            self.states.forget_user(user_id)  # here at once; other processes as they hear it
            await publish_access_change(self.redis, "member", user_id, org_id)

        after_commit(self.db, tokens_stop)
