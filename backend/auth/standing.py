"""An account's standing: whether it is anonymous or verified enough for what it asks, and how
many ways it has to sign in. Read by every part of auth that creates something lasting (keys,
orgs, links, passkeys) or takes a way in away."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import Identity, Passkey, User
from backend.config import Settings
from backend.errors import Forbidden


def anonymous_refused(what: str) -> Forbidden:
    return Forbidden(
        f"An anonymous account cannot {what}: add an email and a password first"
        " (POST /auth/convert)",
        code="anonymous_user",
    )


async def require_permanent(db: AsyncSession, user_id: UUID, what: str) -> None:
    """Refuse ``what`` to an anonymous account (read from the database: a token's claim may
    be a refresh behind): what it builds must not outlive the idle sweep's deletion."""
    if await db.scalar(select(User.is_anonymous).where(User.id == user_id)):
        raise anonymous_refused(what)


async def require_verified(db: AsyncSession, settings: Settings, user_id: UUID, what: str) -> None:
    """Refuse ``what`` to an anonymous account, and to one whose email is unverified unless
    settings allow it: whoever signed up with someone else's address must not keep keys or
    orgs behind."""
    found = (
        await db.execute(select(User.email_verified, User.is_anonymous).where(User.id == user_id))
    ).first()
    if found is not None and found.is_anonymous:
        raise anonymous_refused(what)
    if settings.unverified_may_act:
        return
    if found is None or not found.email_verified:
        raise Forbidden(f"Verify your email address before you {what}", code="email_not_verified")


def became_permanent(user: User) -> None:
    """The anonymous ``user`` now has a way back in of its own: a confirmed email and password
    (POST /auth/convert), an OAuth identity, a passkey. Every such path calls this, and only
    this: the account stops being anonymous for good, so the idle sweep passes it by, and its
    next access token says ``is_anonymous: false`` (``@auth.anonymous`` in rules)."""
    user.is_anonymous = False


def address_of(user: User, what: str) -> str:
    """The account's email, for a path that mails it; an anonymous account has none, and is
    refused ``what``."""
    if user.email is None:
        raise anonymous_refused(what)
    return user.email


async def passkey_count(db: AsyncSession, user_id: UUID) -> int:
    """How many passkeys the user has: each is a way to sign in (and a second factor)."""
    count = await db.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user_id)
    )
    return int(count or 0)


async def ways_to_sign_in(db: AsyncSession, user: User) -> int:
    """How many ways ``user`` has to sign in: a password, each linked provider account and
    each passkey. The one place that counts them: removing a way (unlinking a provider,
    removing a passkey) never takes the last one."""
    identities = await db.scalar(
        select(func.count()).select_from(Identity).where(Identity.user_id == user.id)
    )
    return (
        int(user.password_hash is not None)
        + int(identities or 0)
        + await passkey_count(db, user.id)
    )
