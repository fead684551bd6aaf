"""Signing in, whichever the way: the attempt counted, a passed first factor turned into
tokens or into the two-factor step, that step's pending state, and a new session opened with
its tokens (the owner mailed when the device is new). A collaborator of every service with a
way in (sessions, two_factor, passkeys, mailed, accounts, anonymous, identities)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from uuid import UUID

import msgspec
from sqlalchemy import exists, select

from backend.auth.core import (
    MFA_PENDING_KEY,
    MFA_TOKEN_PREFIX,
    SIGNIN_FAILURES_KEY,
    AuthCore,
    invalid_grant,
    user_view,
)
from backend.auth.models import AuthSession, OrgMember, RefreshToken, User
from backend.auth.revocations import SessionState
from backend.auth.schemas import TokenResponse
from backend.auth.secrets import REFRESH_TOKEN_PREFIX, hash_token, issue_access_token, new_token
from backend.auth.standing import passkey_count
from backend.db.transactions import after_commit
from backend.errors import TooMany, Unauthenticated
from backend.identity import ClientInfo
from backend.lib.counters import count_in_window
from backend.mail.compose import MailKind, mail_time


class SignIns:
    """Count attempts, open sessions, and hold the two-factor step between the factors."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    async def after_first_factor(
        self, user: User, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Tokens now, or, with two-factor sign-in on, a 401 ``mfa_required`` carrying a
        single-use ``mfa_token`` to send back with the app's code or a passkey (grant_type mfa);
        ``methods`` says which the account has. A passkey alone does not turn two-factor
        sign-in on (docs/decisions/0017)."""
        core = self.core
        if user.totp_enabled_at is None:
            return await self.open_session(user, org_id, client)
        methods = ["totp"]
        if core.settings.passkey_rp_id and await passkey_count(core.db, user.id):
            methods.append("passkey")
        await core.db.flush()  # what the first factor changed (a rehash, a verified email)
        token = new_token(MFA_TOKEN_PREFIX)
        pending = {"user": str(user.id), "org": str(org_id) if org_id else None}
        await core.redis.set(
            MFA_PENDING_KEY.format(hash_token(token)),
            msgspec.json.encode(pending),
            ex=core.settings.mfa_token_ttl_seconds,
        )
        raise Unauthenticated(
            "Enter the code from your authenticator app (grant_type mfa, with this mfa_token)",
            code="mfa_required",
            mfa_token=token,
            expires_in=core.settings.mfa_token_ttl_seconds,
            methods=methods,
        )

    async def pending_mfa(self, mfa_token: str) -> tuple[str, UUID | None, User]:
        """The account whose first factor passed with ``mfa_token`` (locked: one second step at
        a time), its pending key in Redis and the org it asked for; 401 ``invalid_grant`` when
        the step is unknown, expired, or the account changed meanwhile."""
        key = MFA_PENDING_KEY.format(hash_token(mfa_token))
        raw = await self.core.redis.get(key)
        pending = msgspec.json.decode(raw) if raw is not None else None
        user = (
            await self.core.db.get(User, UUID(pending["user"]), with_for_update=True)
            if pending
            else None
        )
        if pending is None or user is None or user.disabled or user.totp_enabled_at is None:
            raise invalid_grant("The sign-in step is not valid or has expired; sign in again")
        return key, UUID(pending["org"]) if pending["org"] else None, user

    async def count_attempt(self, email: str, client: ClientInfo) -> str:
        """Count a sign-in attempt on the account from the caller's address, before checking
        it, and answer 429 past AUTH_FAILED_SIGNIN_LIMIT; the counter's key, which a success
        deletes. Counting first, in one transaction, means concurrent guesses cannot all slip
        under the limit; keying by address too means nobody can lock a person out of their
        account from somewhere else."""
        settings = self.core.settings
        who = f"{email.strip().lower()}\n{client.ip or '-'}"
        key = SIGNIN_FAILURES_KEY.format(hash_token(who))
        window = settings.auth_failed_signin_window_seconds
        attempts, retry_after = await count_in_window(self.core.redis, key, window)
        if attempts > settings.auth_failed_signin_limit:
            raise TooMany(
                "Too many failed sign-ins for this account; try again later",
                code="too_many_attempts",
                headers={"Retry-After": str(retry_after)},
            )
        return key

    async def open_session(
        self, user: User, org_id: UUID | None, client: ClientInfo, *, sign_in: bool = True
    ) -> TokenResponse:
        """A new session of ``user`` and its tokens. ``sign_in`` (every way of signing in; not
        a sign-up) mails the owner when the device and address are new to the account."""
        core = self.core
        if sign_in:
            await self._mail_if_new_device(user, client)
        if org_id is None:
            org_id = await self._default_org(user.id)
        else:
            await core.require_membership(user.id, org_id)
        now = core.clock.now()
        session = AuthSession(
            user_id=user.id,
            org_id=org_id,
            expires_at=now + timedelta(days=core.settings.session_idle_timeout_days),
            last_used_at=now,
            user_agent=(client.user_agent or "")[:300] or None,
            ip=client.ip,
        )
        core.db.add(session)
        await core.db.flush()
        refresh = new_token(REFRESH_TOKEN_PREFIX)
        core.db.add(
            RefreshToken(session_id=session.id, token_hash=hash_token(refresh), created_at=now)
        )
        await core.db.flush()
        state: SessionState = (user.id, user.role, session.org_id)
        after_commit(core.db, partial(core.cache_session_state, session.id, state))
        return self.token_response(user, session, refresh, now)

    def token_response(
        self, user: User, session: AuthSession, refresh: str, now: datetime
    ) -> TokenResponse:
        settings = self.core.settings
        ttl = settings.access_token_ttl_seconds
        access = issue_access_token(
            secret_key=settings.secret_key,
            user_id=user.id,
            session_id=session.id,
            role=user.role,
            org_id=session.org_id,
            now=now,
            ttl=timedelta(seconds=ttl),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            is_anonymous=user.is_anonymous,
        )
        return TokenResponse(
            access_token=access, refresh_token=refresh, expires_in=ttl, user=user_view(user)
        )

    async def _mail_if_new_device(self, user: User, client: ClientInfo) -> None:
        """Tell the account's owner of a sign-in from a device and address (the pair) none
        of its sessions came from before; the very first sign-in of an account is not news."""
        core = self.core
        if not core.settings.auth_new_sign_in_mail or user.email is None:
            return  # off, or an anonymous account: it has no address
        user_agent = (client.user_agent or "")[:300] or None
        earlier = await core.db.execute(
            select(
                exists().where(AuthSession.user_id == user.id),
                exists().where(
                    AuthSession.user_id == user.id,
                    AuthSession.user_agent.is_not_distinct_from(user_agent),
                    AuthSession.ip.is_not_distinct_from(client.ip),
                ),
            )
        )
        any_session, same_device = earlier.one()
        if any_session and not same_device:
            core.mail_user(
                user,
                MailKind.NEW_SIGN_IN,
                when=mail_time(core.clock.now()),
                device=user_agent or "-",
                ip=client.ip or "-",
            )

    async def _default_org(self, user_id: UUID) -> UUID | None:
        org_id: UUID | None = await self.core.db.scalar(
            select(OrgMember.org_id)
            .where(OrgMember.user_id == user_id)
            .order_by(OrgMember.created_at)
            .limit(1)
        )
        return org_id
