"""Deleting an account, the one way every path does it (DELETE /auth/me, an admin's DELETE
/admin/users/{id}, the idle sweep of anonymous users): a collaborator of those services."""

from __future__ import annotations

from functools import partial

from sqlalchemy import exists, select
from sqlalchemy.orm import aliased

from backend.auth.core import AuthCore
from backend.auth.models import OrgMember, User
from backend.auth.revocations import publish_access_change
from backend.auth.revoking import Revoker
from backend.db.transactions import after_commit
from backend.errors import Conflict


class AccountDeletion:
    """Delete an account: its sessions end at once, what it owned goes or stays ownerless."""

    def __init__(self, core: AuthCore, revoker: Revoker) -> None:
        self.core = core
        self.revoker = revoker

    async def delete(self, user: User) -> None:
        """Delete an account: its sessions end at once, its keys, jobs and schedules go with
        it, records it owned stay without an owner (the collections' foreign keys say so).
        Refused while it is the only owner of an org: hand the org over or delete it first."""
        db = self.core.db
        others = aliased(OrgMember)
        sole = (
            await db.scalars(
                select(OrgMember.org_id).where(
                    OrgMember.user_id == user.id,
                    OrgMember.role == "owner",
                    ~exists().where(
                        others.org_id == OrgMember.org_id,
                        others.role == "owner",
                        others.user_id != user.id,
                    ),
                )
            )
        ).all()
        if sole:
            raise Conflict(
                "The account is the only owner of an org: make someone else an owner, or"
                " delete the org (DELETE /orgs/{id}), before deleting the account",
                code="last_owner",
                orgs=[str(org_id) for org_id in sole],
            )
        await self.revoker.revoke_sessions_of(user.id)
        await db.delete(user)  # its budget overrides go by trigger (migration 0015)
        await db.flush()
        # Its keys were deleted with the account.
        after_commit(db, partial(publish_access_change, self.core.redis, "keys", user.id))
