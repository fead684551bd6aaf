"""Invitations by mail: sending one, listing and revoking them, and joining by one's token.

An invitation mails a single-use token (only its hash is stored) to an address; the account
that accepts it must have that address, and accepting proves the mailbox. Sending is limited
per inviter and org (INVITATIONS_PER_HOUR), and only owners invite or revoke owners.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from uuid import UUID

import msgspec
from sqlalchemy import func, select

from backend.auth.models import Org, OrgInvitation, OrgMember, User
from backend.auth.secrets import hash_token, new_token
from backend.auth.standing import address_of, anonymous_refused, require_permanent
from backend.db.transactions import after_commit
from backend.errors import Conflict, Forbidden, NotFound, Rejected, TooMany
from backend.identity import Principal
from backend.lib.counters import count_in_window
from backend.mail.compose import Mail, MailKind
from backend.orgs.core import OrgCore, org_view
from backend.orgs.schemas import InvitationView, NewInvitation, OrgView
from backend.paging import Page, Paging, by_key, page_by_key


def _invitation_view(invitation: OrgInvitation) -> InvitationView:
    return msgspec.convert(invitation, InvitationView, from_attributes=True)


class Invitations(OrgCore):
    """Inviting by mail, listing and revoking invitations, accepting one."""

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
        view = org_view(org, member.role)
        await self.db.flush()
        return view
