"""Anonymous users: signed in with nothing (grant_type anonymous), made permanent by
confirming an email and a password, deleted by beat once idle.

An anonymous user is a user row with no email and ``is_anonymous`` set; its records are
records like anyone's, so they stay when it becomes permanent (``became_permanent`` in standing:
the one place the flag is cleared, which OAuth and passkeys call too). It cannot create API
keys, orgs or invitations (``require_permanent``), nor anything that mails it. Its activity is
its sessions' ``last_used_at``, which every sign-in and refresh sets already: no write of its
own on the request path.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import exists, select, update

from backend.auth.core import EMAIL_CHANGE, AuthCore
from backend.auth.deletion import AccountDeletion
from backend.auth.email_tokens import EmailTokens
from backend.auth.models import AuthSession, EmailToken, User
from backend.auth.revoking import Revoker
from backend.auth.schemas import ConvertAccount, TokenResponse
from backend.auth.secrets import hash_token
from backend.auth.sign_ins import SignIns
from backend.errors import Conflict, Forbidden, TooMany
from backend.identity import ClientInfo, Principal
from backend.lib.counters import count_in_window
from backend.mail.compose import Mail, MailKind

log = logging.getLogger(__name__)

ANONYMOUS_SIGN_INS_KEY = "litebase:auth:anonymous-sign-ins:{}"
ANONYMOUS_WINDOW_SECONDS = 3600


class AnonymousUsers:
    """Anonymous sign-in, conversion to a permanent account, the idle sweep."""

    def __init__(
        self,
        core: AuthCore,
        sign_ins: SignIns,
        email_tokens: EmailTokens,
        deletion: AccountDeletion,
    ) -> None:
        self.core = core
        self.sign_ins = sign_ins
        self.email_tokens = email_tokens
        self.deletion = deletion

    @classmethod
    def over(cls, core: AuthCore) -> AnonymousUsers:
        """The service over ``core``, with its collaborators made over it too."""
        deletion = AccountDeletion(core, Revoker(core))
        return cls(core, SignIns(core), EmailTokens(core), deletion)

    async def sign_in_anonymously(self, client: ClientInfo) -> TokenResponse:
        """A new user with no email, signed in (AUTH_ANONYMOUS_ENABLED; at most
        AUTH_ANONYMOUS_PER_HOUR per client address an hour)."""
        if not self.core.settings.auth_anonymous_enabled:
            raise Forbidden(
                "Anonymous sign-in is turned off (AUTH_ANONYMOUS_ENABLED)",
                code="anonymous_disabled",
            )
        key = ANONYMOUS_SIGN_INS_KEY.format(hash_token(client.ip or "-"))
        made, retry_after = await count_in_window(self.core.redis, key, ANONYMOUS_WINDOW_SECONDS)
        if made > self.core.settings.auth_anonymous_per_hour:
            raise TooMany(
                "Too many anonymous users from this address; try again later",
                code="too_many_anonymous_users",
                headers={"Retry-After": str(retry_after)},
            )
        user = User(email=None, is_anonymous=True)
        self.core.db.add(user)
        await self.core.db.flush()
        return await self.sign_ins.open_session(user, None, client)

    async def check_convertible(self, principal: Principal) -> None:
        """409 unless the caller is an anonymous user (checked before the answer; the rest,
        which could tell whether an address has an account, happens after it)."""
        user = await self.core.get_user(principal)
        if not user.is_anonymous:
            raise Conflict(
                "The account is not anonymous: change its email with POST /auth/email",
                code="not_anonymous",
            )

    async def request_conversion(self, principal: Principal, data: ConvertAccount) -> None:
        """After the answer: keep the password, and mail the address a token that confirms it
        (POST /auth/email/confirm), which makes the account permanent. An address that has an
        account gets a mail telling its owner instead, and nothing changes, so the answer (the
        same 202 either way) tells nobody which addresses have accounts."""
        user = await self.core.db.get(User, principal.user_id, with_for_update=True)
        if user is None or not user.is_anonymous:
            return
        email = data.email.strip()
        existing = await self.core.users.get_by_email(email)
        if existing is not None:
            self.core.mail_user(existing, MailKind.ACCOUNT_EXISTS)
            return
        user.password_hash = await asyncio.to_thread(self.core.passwords.hash, data.password)
        if data.name is not None:
            user.name = data.name.strip()
        # A new request replaces the ones before: only the newest address can be confirmed.
        await self.core.db.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user.id,
                EmailToken.purpose == EMAIL_CHANGE,
                EmailToken.used_at.is_(None),
            )
            .values(used_at=self.core.clock.now())
        )
        ttl = self.core.settings.verify_token_ttl_seconds
        token = await self.email_tokens.issue(user, EMAIL_CHANGE, ttl, new_email=email)
        self.core.mail(
            Mail(
                kind=MailKind.EMAIL_CHANGE,
                to=email,
                locale=user.locale,
                values={"token": token, "hours": max(ttl // 3600, 1), "new_email": email},
            )
        )

    async def delete_idle_anonymous(self, limit: int) -> int:
        """Delete up to ``limit`` anonymous users whose sessions have not been used for
        AUTH_ANONYMOUS_IDLE_DAYS, as an account deletion does (``AccountDeletion``: sessions end
        at once, records go where the collections say); how many went.

        With the default (30 days, as SESSION_IDLE_TIMEOUT_DAYS) such a user has no live
        session left, so no way back in: nobody is deleted under their own feet."""
        cutoff = self.core.clock.now() - timedelta(days=self.core.settings.auth_anonymous_idle_days)
        used_since = exists().where(
            AuthSession.user_id == User.id, AuthSession.last_used_at >= cutoff
        )
        idle = (
            await self.core.db.scalars(
                select(User)
                .where(User.is_anonymous, User.created_at < cutoff, ~used_since)
                .order_by(User.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        deleted = 0
        for user in idle:
            try:
                await self.deletion.delete(user)  # refuses before it changes anything
            except Conflict:  # the only owner of an org (made in SQL: the API refuses it)
                log.warning("anonymous user %s is idle but owns an org; kept", user.id)
                continue
            deleted += 1
        return deleted
