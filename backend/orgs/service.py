"""Org logic: create, list, members and their roles, invitations by mail.

Roles: owners do everything, admins manage members and invitations but never owners, members
read. An org always keeps at least one owner. An org you are not in is 404, never 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from typing import cast
from uuid import UUID

import msgspec
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import AuthSession, Org, OrgInvitation, OrgMember, User
from backend.auth.revocations import SessionStates, publish_access_change
from backend.auth.secrets import hash_token, new_token
from backend.auth.service import (
    address_of,
    anonymous_refused,
    forget_session_states,
    require_permanent,
    require_verified,
)
from backend.config import Settings
from backend.db.transactions import after_commit
from backend.errors import Conflict, Forbidden, NotFound, Rejected, TooMany
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.lib.counters import count_in_window
from backend.mail.compose import Mail, MailKind
from backend.mail.service import Mailer
from backend.orgs.schemas import (
    InvitationView,
    MemberView,
    NewInvitation,
    NewOrg,
    OrgRole,
    OrgUpdate,
    OrgView,
)
from backend.paging import Page, Paging, by_key, by_offset, page_by_key, page_by_offset

MANAGERS = ("owner", "admin")


def as_role(value: str) -> OrgRole:
    """Roles are stored as text; the database only ever holds the three of OrgRole."""
    return cast(OrgRole, value)


def _not_found() -> NotFound:
    return NotFound("No such org", code="not_found")


def _org_view(org: Org, role: str) -> OrgView:
    """An org as its member sees it: with the member's role."""
    return OrgView(id=org.id, name=org.name, role=as_role(role), created_at=org.created_at)


def _invitation_view(invitation: OrgInvitation) -> InvitationView:
    return msgspec.convert(invitation, InvitationView, from_attributes=True)


class OrgService:
    def __init__(
        self,
        db: AsyncSession,
        settings: Settings,
        clock: Clock,
        mailer: Mailer,
        redis: Redis,
        states: SessionStates,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.mailer = mailer
        self.redis = redis
        self.states = states

    async def create(self, principal: Principal, data: NewOrg) -> OrgView:
        await require_verified(self.db, self.settings, principal.user_id, "create an org")
        org = Org(name=data.name.strip(), created_by=principal.user_id)
        self.db.add(org)
        await self.db.flush()
        self.db.add(OrgMember(org_id=org.id, user_id=principal.user_id, role="owner"))
        await self._activate_if_none(principal, org.id)
        await self.db.flush()
        await self.db.refresh(org)
        view = _org_view(org, "owner")
        await self.db.flush()
        return view

    async def _activate_if_none(self, principal: Principal, org_id: UUID) -> None:
        """A session with no active org gets this one at its next refresh."""
        if principal.session_id is None:
            return
        session = await self.db.get(AuthSession, principal.session_id)
        if session is not None and session.org_id is None:
            session.org_id = org_id

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
        return found.map(lambda row: _org_view(*row))

    async def get(self, principal: Principal, org_id: UUID) -> OrgView:
        member = await self._require_member(principal, org_id)
        org = await self.db.get(Org, org_id)
        assert org is not None
        return _org_view(org, member.role)

    async def rename(self, principal: Principal, org_id: UUID, data: OrgUpdate) -> OrgView:
        member = await self._require_manager(principal, org_id)
        org = await self.db.get(Org, org_id)
        assert org is not None
        org.name = data.name.strip()
        view = _org_view(org, member.role)
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

    async def _count_invitation(self, user_id: UUID, org_id: UUID) -> None:
        """429 past INVITATIONS_PER_HOUR from this user for this org: each one mails a
        stranger, so an org cannot be used to spam addresses."""
        key = f"litebase:invitations:{org_id}:{user_id}"
        sent, retry_after = await count_in_window(self.redis, key, 3600)
        if sent > self.settings.invitations_per_hour:
            raise TooMany(
                f"At most {self.settings.invitations_per_hour} invitations an hour from you for"
                " this org (INVITATIONS_PER_HOUR); try again later",
                code="too_many_invitations",
                headers={"Retry-After": str(retry_after)},
            )

    async def _membership(self, org_id: UUID, user_id: UUID) -> OrgMember | None:
        member: OrgMember | None = await self.db.scalar(
            select(OrgMember).where(OrgMember.org_id == org_id, OrgMember.user_id == user_id)
        )
        return member

    async def _require_member(self, principal: Principal, org_id: UUID) -> OrgMember:
        member = await self._membership(org_id, principal.user_id)
        if member is None:
            raise _not_found()
        return member

    async def _require_manager(self, principal: Principal, org_id: UUID) -> OrgMember:
        member = await self._require_member(principal, org_id)
        if member.role not in MANAGERS:
            raise Forbidden("Only the org's owners and admins may do this", code="forbidden")
        return member

    async def _lock_org(self, org_id: UUID) -> None:
        # Serialises owner changes, so two concurrent demotions cannot leave no owner.
        await self.db.execute(select(Org.id).where(Org.id == org_id).with_for_update())

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

    async def invite(
        self, principal: Principal, org_id: UUID, data: NewInvitation
    ) -> InvitationView:
        await require_permanent(self.db, principal.user_id, "send invitations")
        actor = await self._require_manager(principal, org_id)
        if data.role == "owner" and actor.role != "owner":
            raise Forbidden("Only owners may invite owners", code="forbidden")
        await self._count_invitation(principal.user_id, org_id)
        org = await self.db.get(Org, org_id)
        assert org is not None
        token = new_token()
        invitation = OrgInvitation(
            org_id=org_id,
            email=data.email.strip(),
            role=data.role,
            token_hash=hash_token(token),
            invited_by=principal.user_id,
            expires_at=self.clock.now() + timedelta(seconds=self.settings.invitation_ttl_seconds),
        )
        self.db.add(invitation)
        await self.db.flush()
        await self.db.refresh(invitation)
        view = _invitation_view(invitation)
        inviter = await self.db.get(User, principal.user_id)
        assert inviter is not None
        # In the invitee's language if they have an account, else in the inviter's.
        invitee = (
            await self.db.execute(
                select(User.locale).where(func.lower(User.email) == invitation.email.lower())
            )
        ).first()
        invited = partial(
            self.mailer.send,
            Mail(
                kind=MailKind.INVITATION,
                to=invitation.email,
                locale=inviter.locale if invitee is None else invitee.locale,
                values={
                    "token": token,
                    "org": org.name,
                    "role": data.role,
                    "inviter": inviter.name or address_of(inviter, "invite"),
                    "days": max(self.settings.invitation_ttl_seconds // 86400, 1),
                },
            ),
        )
        after_commit(self.db, invited)
        return view

    async def invitations(
        self, principal: Principal, org_id: UUID, paging: Paging
    ) -> Page[InvitationView]:
        await self._require_manager(principal, org_id)
        found = await self.db.scalars(
            by_key(
                select(OrgInvitation).where(OrgInvitation.org_id == org_id),
                paging,
                OrgInvitation.created_at,
                OrgInvitation.id,
            )
        )
        page = page_by_key(found.all(), paging, lambda i: (i.created_at, i.id))
        return page.map(_invitation_view)

    async def revoke_invitation(
        self, principal: Principal, org_id: UUID, invitation_id: UUID
    ) -> None:
        """A pending invitation is deleted, so its token no longer works; an accepted one stays
        on record (the member it made is removed with DELETE …/members/{user_id})."""
        actor = await self._require_manager(principal, org_id)
        invitation = await self.db.scalar(
            select(OrgInvitation)
            .where(OrgInvitation.id == invitation_id, OrgInvitation.org_id == org_id)
            .with_for_update()
        )
        if invitation is None:
            raise NotFound("No such invitation", code="not_found")
        if invitation.accepted_at is not None:
            raise Conflict("The invitation was already accepted", code="already_accepted")
        if invitation.role == "owner" and actor.role != "owner":
            raise Forbidden("Only owners may revoke an owner's invitation", code="forbidden")
        await self.db.delete(invitation)
        await self.db.flush()

    async def accept(
        self,
        principal: Principal,
        token: str,
        prove_mailbox: Callable[[User], Awaitable[None]],
    ) -> OrgView:
        """Join by an invitation's token; the invitation reached the caller's mailbox, so
        ``prove_mailbox`` verifies an unverified account (ending what a squatter kept)."""
        now = self.clock.now()
        invitation = await self.db.scalar(
            select(OrgInvitation)
            .where(OrgInvitation.token_hash == hash_token(token))
            .with_for_update()
        )
        if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= now:
            raise Rejected(
                "The invitation is not valid, already used, or expired", code="invalid_token"
            )
        user = await self.db.get(User, principal.user_id)
        assert user is not None
        if user.email is None:
            raise anonymous_refused("accept invitations")
        if user.email.lower() != invitation.email.lower():
            raise Forbidden(
                "This invitation was sent to another email address; sign in with that one",
                code="wrong_recipient",
            )
        member = await self._membership(invitation.org_id, user.id)
        if member is None:
            member = OrgMember(org_id=invitation.org_id, user_id=user.id, role=invitation.role)
            self.db.add(member)
        invitation.accepted_at, invitation.accepted_by = now, user.id
        await prove_mailbox(user)  # the invitation reached this mailbox
        await self._activate_if_none(principal, invitation.org_id)
        org = await self.db.get(Org, invitation.org_id)
        assert org is not None
        view = _org_view(org, member.role)
        await self.db.flush()
        return view
