"""What every part of auth shares: the service's clients, opening and revoking sessions,
the session-state cache, mailbox proofs, and the small helpers around them."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from functools import partial
from uuid import UUID

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from redis.asyncio import Redis
from sqlalchemy import delete, exists, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from backend.auth.access import SESSION_STATE_KEY, encode_state
from backend.auth.models import (
    ApiKey,
    AuthSession,
    EmailToken,
    OrgMember,
    Passkey,
    RecoveryCode,
    RefreshToken,
    User,
)
from backend.auth.revocations import (
    SessionState,
    SessionStates,
    publish_access_change,
    publish_revocation,
)
from backend.auth.schemas import (
    TokenResponse,
    UserView,
)
from backend.auth.secrets import (
    REFRESH_TOKEN_PREFIX,
    hash_token,
    issue_access_token,
    new_token,
    verify_password,
)
from backend.auth.standing import address_of, passkey_count
from backend.config import Settings
from backend.db.transactions import after_commit
from backend.errors import (
    Conflict,
    Forbidden,
    Invalid,
    TooMany,
    Unauthenticated,
)
from backend.identity import ClientInfo, Principal
from backend.lib.clock import Clock
from backend.lib.counters import count_in_window
from backend.mail.compose import Mail, MailKind, mail_time
from backend.mail.service import Mailer

log = logging.getLogger(__name__)
GRACE_RESPONSE_KEY = "litebase:auth:refresh-grace:{}"
SIGNIN_FAILURES_KEY = "litebase:auth:signin-failures:{}"
MFA_PENDING_KEY = "litebase:auth:mfa-pending:{}"  # a first factor passed, awaiting the code
MFA_TOKEN_PREFIX = "lbm_"  # noqa: S105 - a prefix, not a secret
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
VERIFY_EMAIL, PASSWORD_RESET, EMAIL_CHANGE = "verify_email", "password_reset", "email_change"
SIGN_IN_CODE = "sign_in_code"
SIGN_IN_CODE_DIGITS = 6


def unauthorized(detail: str, code: str) -> Unauthenticated:
    return Unauthenticated(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


def _email_taken(field: str) -> Conflict:
    return Conflict(
        "An account with this email already exists",
        code="email_taken",
        errors=[{"field": field, "message": "already registered", "source": "body"}],
    )


def invalid_grant(detail: str, *, keep_changes: bool = False) -> Unauthenticated:
    return Unauthenticated(detail, code="invalid_grant", keep_changes=keep_changes)


def user_view(user: User) -> UserView:
    view = msgspec.convert(user, UserView, from_attributes=True)
    return msgspec.structs.replace(view, totp_enabled=user.totp_enabled_at is not None)


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def get_by_email(self, email: str) -> User | None:
        return await self.get_one_or_none(func.lower(User.email) == email.strip().lower())


def _wrong_code() -> Invalid:
    return Invalid(
        "The code is not right, or was used already",
        errors=[{"field": "code", "message": "incorrect", "source": "body"}],
    )


class AuthCore:
    """The clients every part of auth works with, and what they share."""

    def __init__(
        self,
        db: AsyncSession,
        redis: Redis,
        settings: Settings,
        clock: Clock,
        mailer: Mailer,
        states: SessionStates,
    ) -> None:
        self.db = db
        self.redis = redis
        self.states = states
        self.settings = settings
        self.clock = clock
        self.mailer = mailer
        self.users = UserService(session=db)

    async def _after_first_factor(
        self, user: User, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Tokens now, or, with two-factor sign-in on, a 401 ``mfa_required`` carrying a
        single-use ``mfa_token`` to send back with the app's code or a passkey (grant_type mfa);
        ``methods`` says which the account has. A passkey alone does not turn two-factor
        sign-in on (docs/decisions/0017)."""
        if user.totp_enabled_at is None:
            return await self._open_session(user, org_id, client)
        methods = ["totp"]
        if self.settings.passkey_rp_id and await passkey_count(self.db, user.id):
            methods.append("passkey")
        await self.db.flush()  # what the first factor changed (a rehash, a verified email)
        token = new_token(MFA_TOKEN_PREFIX)
        pending = {"user": str(user.id), "org": str(org_id) if org_id else None}
        await self.redis.set(
            MFA_PENDING_KEY.format(hash_token(token)),
            msgspec.json.encode(pending),
            ex=self.settings.mfa_token_ttl_seconds,
        )
        raise Unauthenticated(
            "Enter the code from your authenticator app (grant_type mfa, with this mfa_token)",
            code="mfa_required",
            mfa_token=token,
            expires_in=self.settings.mfa_token_ttl_seconds,
            methods=methods,
        )

    async def _pending_mfa(self, mfa_token: str) -> tuple[str, UUID | None, User]:
        """The account whose first factor passed with ``mfa_token`` (locked: one second step at
        a time), its pending key in Redis and the org it asked for; 401 ``invalid_grant`` when
        the step is unknown, expired, or the account changed meanwhile."""
        key = MFA_PENDING_KEY.format(hash_token(mfa_token))
        raw = await self.redis.get(key)
        pending = msgspec.json.decode(raw) if raw is not None else None
        user = (
            await self.db.get(User, UUID(pending["user"]), with_for_update=True)
            if pending
            else None
        )
        if pending is None or user is None or user.disabled or user.totp_enabled_at is None:
            raise invalid_grant("The sign-in step is not valid or has expired; sign in again")
        return key, UUID(pending["org"]) if pending["org"] else None, user

    async def _count_attempt(self, email: str, client: ClientInfo) -> str:
        """Count a sign-in attempt on the account from the caller's address, before checking
        it, and answer 429 past AUTH_FAILED_SIGNIN_LIMIT; the counter's key, which a success
        deletes. Counting first, in one transaction, means concurrent guesses cannot all slip
        under the limit; keying by address too means nobody can lock a person out of their
        account from somewhere else."""
        who = f"{email.strip().lower()}\n{client.ip or '-'}"
        key = SIGNIN_FAILURES_KEY.format(hash_token(who))
        window = self.settings.auth_failed_signin_window_seconds
        attempts, retry_after = await count_in_window(self.redis, key, window)
        if attempts > self.settings.auth_failed_signin_limit:
            raise TooMany(
                "Too many failed sign-ins for this account; try again later",
                code="too_many_attempts",
                headers={"Retry-After": str(retry_after)},
            )
        return key

    async def _open_session(
        self, user: User, org_id: UUID | None, client: ClientInfo, *, sign_in: bool = True
    ) -> TokenResponse:
        """A new session of ``user`` and its tokens. ``sign_in`` (every way of signing in; not
        a sign-up) mails the owner when the device and address are new to the account."""
        if sign_in:
            await self._mail_if_new_device(user, client)
        if org_id is None:
            org_id = await self._default_org(user.id)
        else:
            await self._require_membership(user.id, org_id)
        now = self.clock.now()
        session = AuthSession(
            user_id=user.id,
            org_id=org_id,
            expires_at=now + timedelta(days=self.settings.session_idle_timeout_days),
            last_used_at=now,
            user_agent=(client.user_agent or "")[:300] or None,
            ip=client.ip,
        )
        self.db.add(session)
        await self.db.flush()
        refresh = new_token(REFRESH_TOKEN_PREFIX)
        self.db.add(
            RefreshToken(session_id=session.id, token_hash=hash_token(refresh), created_at=now)
        )
        await self.db.flush()
        state: SessionState = (user.id, user.role, session.org_id)
        after_commit(self.db, partial(self._cache_session_state, session.id, state))
        return self._token_response(user, session, refresh, now)

    def _mail(self, mail: Mail) -> None:
        """Send ``mail`` once the request's changes are committed (a token it carries is
        stored by then; a request that fails mails nothing)."""
        after_commit(self.db, partial(self.mailer.send, mail))

    def _mail_user(self, user: User, kind: MailKind, **values: str | int) -> None:
        """Mail ``user`` a ``kind`` of mail, in their language, after the commit; ``values``
        are what that kind's templates need (backend/mail/compose.py: VALUES)."""
        self._mail(
            Mail(kind=kind, to=address_of(user, "be mailed"), locale=user.locale, values=values)
        )

    async def _mail_if_new_device(self, user: User, client: ClientInfo) -> None:
        """Tell the account's owner of a sign-in from a device and address (the pair) none
        of its sessions came from before; the very first sign-in of an account is not news."""
        if not self.settings.auth_new_sign_in_mail or user.email is None:
            return  # off, or an anonymous account: it has no address
        user_agent = (client.user_agent or "")[:300] or None
        earlier = await self.db.execute(
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
            self._mail_user(
                user,
                MailKind.NEW_SIGN_IN,
                when=mail_time(self.clock.now()),
                device=user_agent or "-",
                ip=client.ip or "-",
            )

    def _token_response(
        self, user: User, session: AuthSession, refresh: str, now: datetime
    ) -> TokenResponse:
        ttl = self.settings.access_token_ttl_seconds
        access = issue_access_token(
            secret_key=self.settings.secret_key,
            user_id=user.id,
            session_id=session.id,
            role=user.role,
            org_id=session.org_id,
            now=now,
            ttl=timedelta(seconds=ttl),
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            is_anonymous=user.is_anonymous,
        )
        return TokenResponse(
            access_token=access, refresh_token=refresh, expires_in=ttl, user=user_view(user)
        )

    async def _default_org(self, user_id: UUID) -> UUID | None:
        org_id: UUID | None = await self.db.scalar(
            select(OrgMember.org_id)
            .where(OrgMember.user_id == user_id)
            .order_by(OrgMember.created_at)
            .limit(1)
        )
        return org_id

    async def _require_membership(self, user_id: UUID, org_id: UUID) -> None:
        member = await self.db.scalar(
            select(OrgMember.id).where(OrgMember.user_id == user_id, OrgMember.org_id == org_id)
        )
        if member is None:
            raise Forbidden(
                "You are not a member of that org",
                code="not_a_member",
                errors=[{"field": "org_id", "message": "not a member", "source": "body"}],
            )

    async def _cache_session_state(self, session_id: UUID, state: SessionState) -> None:
        # Kept as long as an access token lives, so a revoked session stays refused.
        await self.redis.set(
            SESSION_STATE_KEY.format(session_id),
            encode_state(state),
            ex=self.settings.access_token_ttl_seconds,
        )

    async def _revoke(self, session: AuthSession, now: datetime) -> None:
        if session.revoked_at is None:
            session.revoked_at = now
        self.states.revoked(session.id)
        await self._cache_session_state(session.id, False)
        await publish_revocation(self.redis, session.id)

    async def _revoke_sessions_of(self, user_id: UUID, *, keep: UUID | None = None) -> int:
        sessions = (
            await self.db.scalars(
                select(AuthSession).where(
                    AuthSession.user_id == user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.id != keep if keep else true(),
                )
            )
        ).all()
        now = self.clock.now()
        for session in sessions:
            await self._revoke(session, now)
        return len(sessions)

    async def _revoke_keys_of(self, user_id: UUID) -> None:
        """Revoke every API key of the user: after a password reset, a disable or a role change
        the keys made before are dead for good (re-enabling the user does not revive them)."""
        await self.db.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=self.clock.now())
        )
        await publish_access_change(self.redis, "keys", user_id)

    async def _turn_off_totp(self, user: User) -> None:
        """Two-factor sign-in off: the app's secret and the recovery codes go."""
        user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
        await self.db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))

    async def _end_mailed_tokens(self, user_id: UUID) -> None:
        """Every unused mailed token of the user (reset, sign-in code, verification, a pending
        email change) stops working: after a password change, what was mailed before must not
        undo it or take the account elsewhere."""
        await self.db.execute(
            update(EmailToken)
            .where(EmailToken.user_id == user_id, EmailToken.used_at.is_(None))
            .values(used_at=self.clock.now())
        )

    async def prove_mailbox(self, user: User, *, keep: UUID | None = None) -> None:
        """The account's mailbox answered (a verification, a sign-in code). If the account was
        unverified, whoever signed it up may not own the address (pre-hijacking: sign up with
        someone's email, wait for them to use it): every session but ``keep``, every key and
        every passkey of it end."""
        if user.email_verified:
            return
        user.email_verified = True
        await self._revoke_sessions_of(user.id, keep=keep)
        await self._revoke_keys_of(user.id)
        await self.db.execute(delete(Passkey).where(Passkey.user_id == user.id))

    async def _check_password(
        self, user: User, password: str | None, detail: str, *, field: str = "password"
    ) -> None:
        """422 naming ``field`` unless ``password`` is the account's (a sensitive change)."""
        if password is None or not await asyncio.to_thread(
            verify_password, user.password_hash, password
        ):
            raise Invalid(
                detail,
                errors=[{"field": field, "message": "missing or incorrect", "source": "body"}],
            )

    async def get_user(self, principal: Principal) -> User:
        user = await self.db.get(User, principal.user_id)
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        return user

    async def _delete_user(self, user: User) -> None:
        """Delete an account: its sessions end at once, its keys, jobs and schedules go with
        it, records it owned stay without an owner (the collections' foreign keys say so).
        Refused while it is the only owner of an org: hand the org over or delete it first."""
        others = aliased(OrgMember)
        sole = (
            await self.db.scalars(
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
        await self._revoke_sessions_of(user.id)
        await self.db.delete(user)  # its budget overrides go by trigger (migration 0015)
        await self.db.flush()
        # Its keys were deleted with the account.
        after_commit(self.db, partial(publish_access_change, self.redis, "keys", user.id))
