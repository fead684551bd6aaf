"""Ending access: a session, every session of a user, every API key of a user, every unused
mailed token of a user. A collaborator of the services that take access away (a logout, a
replayed refresh token, a password reset or change, an admin's change, a mailbox proof, an
account deletion); the revocations reach every API process through Redis."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select, true, update

from backend.auth.core import AuthCore
from backend.auth.models import ApiKey, AuthSession, EmailToken
from backend.auth.revocations import publish_access_change, publish_revocation


class Revoker:
    """End sessions, API keys and mailed tokens, at once on every API process."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    async def revoke(self, session: AuthSession, now: datetime) -> None:
        core = self.core
        if session.revoked_at is None:
            session.revoked_at = now
        core.states.revoked(session.id)
        await core.cache_session_state(session.id, False)
        await publish_revocation(core.redis, session.id)

    async def revoke_sessions_of(self, user_id: UUID, *, keep: UUID | None = None) -> int:
        sessions = (
            await self.core.db.scalars(
                select(AuthSession).where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.id != keep if keep else true(),
                )
            )
        ).all()
        now = self.core.clock.now()
        for session in sessions:
            await self.revoke(session, now)
        return len(sessions)

    async def revoke_keys_of(self, user_id: UUID) -> None:
        """Revoke every API key of the user: after a password reset, a disable or a role change
        the keys made before are dead for good (re-enabling the user does not revive them)."""
        await self.core.db.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=self.core.clock.now())
        )
        await publish_access_change(self.core.redis, "keys", user_id)

    async def end_mailed_tokens(self, user_id: UUID) -> None:
        """Every unused mailed token of the user (reset, sign-in code, verification, a pending
        email change) stops working: after a password change, what was mailed before must not
        undo it or take the account elsewhere."""
        await self.core.db.execute(
            update(EmailToken)
            .where(EmailToken.user_id == user_id, EmailToken.used_at.is_(None))
            .values(used_at=self.core.clock.now())
        )
