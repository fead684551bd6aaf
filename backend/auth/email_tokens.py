"""Single-use tokens sent by mail (verification, password reset, email change, sign-in
codes): issued and stored hashed, found while unused and unexpired, taken once. A
collaborator of the services that mail one (mailed, accounts, anonymous)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from backend.auth.core import VERIFY_EMAIL, AuthCore
from backend.auth.models import EmailToken, User
from backend.auth.secrets import (
    hash_token,
    new_token,
)
from backend.auth.standing import address_of
from backend.errors import (
    Rejected,
)
from backend.mail.compose import MailKind


class EmailTokens:
    """Issue, send, find and take mailed single-use tokens: a collaborator of the services
    that mail one (mailed, accounts, anonymous)."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    async def issue(
        self, user: User, purpose: str, ttl: int, *, new_email: str | None = None
    ) -> str:
        """A new single-use token, stored hashed and committed; the caller mails it."""
        token = new_token()
        await self.store(user, purpose, ttl, hash_token(token), new_email=new_email)
        return token

    async def store(
        self, user: User, purpose: str, ttl: int, token_hash: str, *, new_email: str | None = None
    ) -> None:
        self.core.db.add(
            EmailToken(
                user_id=user.id,
                purpose=purpose,
                token_hash=token_hash,
                expires_at=self.core.clock.now() + timedelta(seconds=ttl),
                new_email=new_email,
            )
        )
        await self.core.db.flush()

    async def usable(self, token_hash: str, purpose: str) -> EmailToken | None:
        """The unused, unexpired token with this hash, locked for the caller's transaction."""
        found: EmailToken | None = await self.core.db.scalar(
            select(EmailToken)
            .where(
                EmailToken.token_hash == token_hash,
                EmailToken.purpose == purpose,
                EmailToken.used_at.is_(None),
                EmailToken.expires_at > self.core.clock.now(),
            )
            .with_for_update()
        )
        return found

    async def send(self, user: User, purpose: str) -> None:
        address_of(user, "be mailed")  # no address (anonymous): refused before a token exists
        ttl = (
            self.core.settings.verify_token_ttl_seconds
            if purpose == VERIFY_EMAIL
            else self.core.settings.reset_token_ttl_seconds
        )
        token = await self.issue(user, purpose, ttl)
        if purpose == VERIFY_EMAIL:
            self.core.mail_user(user, MailKind.VERIFY_EMAIL, token=token, hours=max(ttl // 3600, 1))
        else:
            minutes = max(ttl // 60, 1)
            self.core.mail_user(user, MailKind.PASSWORD_RESET, token=token, minutes=minutes)

    async def use(self, token: str, purpose: str) -> User:
        found = await self.take(token, purpose)
        user = await self.core.db.get(User, found.user_id)
        assert user is not None  # the foreign key cascades deletes
        return user

    async def take(self, token: str, purpose: str) -> EmailToken:
        """The token's row, marked used (in the caller's transaction); 400 if it can't be."""
        found = await self.usable(hash_token(token), purpose)
        if found is None:
            raise Rejected(
                "The token is not valid, already used, or expired",
                code="invalid_token",
                errors=[{"field": "token", "message": "invalid or expired", "source": "body"}],
            )
        found.used_at = self.core.clock.now()
        return found
