"""What every org operation stands on: the service's clients, roles and membership checks.

Roles: owners do everything, admins manage members and invitations but never owners, members
read. An org you are not in is 404, never 403. ``OrgCore`` holds the database session and the
shared clients, and finds the caller's membership (``_require_member``, ``_require_manager``);
Each org service (``Orgs``, ``Members``, ``Invitations``) is one of these with its own job.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import AuthSession, Org, OrgMember
from backend.auth.revocations import SessionStates
from backend.config import Settings
from backend.errors import Forbidden, NotFound
from backend.identity import Principal
from backend.lib.clock import Clock
from backend.mail.service import Mailer
from backend.orgs.schemas import OrgRole, OrgView

MANAGERS = ("owner", "admin")


def as_role(value: str) -> OrgRole:
    """Roles are stored as text; the database only ever holds the three of OrgRole."""
    return cast(OrgRole, value)


def _not_found() -> NotFound:
    return NotFound("No such org", code="not_found")


def org_view(org: Org, role: str) -> OrgView:
    """An org as its member sees it: with the member's role."""
    return OrgView(id=org.id, name=org.name, role=as_role(role), created_at=org.created_at)


class OrgCore:
    """The database session and clients an org operation uses, and the checks they share."""

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

    async def _activate_if_none(self, principal: Principal, org_id: UUID) -> None:
        """A session with no active org gets this one at its next refresh."""
        if principal.session_id is None:
            return
        session = await self.db.get(AuthSession, principal.session_id)
        if session is not None and session.org_id is None:
            session.org_id = org_id

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
