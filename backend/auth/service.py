"""Auth logic: sign-up and sign-in, rotating refresh tokens, sessions, API keys, email flows.

Refresh tokens rotate on every use. A replay of an already-rotated token within the grace
window (concurrent tabs, a retried request) gets the very same new pair, so nobody is logged
out at random; a replay after it means the token leaked, and the whole session is revoked.
Access tokens name their session (``sid``), checked against a Redis cache of session state, so
logout and revocation take effect at once on every API process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

import msgspec
from advanced_alchemy.filters import (
    CollectionFilter,
    LimitOffset,
    OrderBy,
    SearchFilter,
    StatementFilter,
)
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from advanced_alchemy.service import SQLAlchemyAsyncRepositoryService
from redis.asyncio import Redis
from sqlalchemy import exists, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from backend.auth import totp
from backend.auth.models import ApiKey, AuthSession, EmailToken, OrgMember, RefreshToken, User
from backend.auth.revocations import (
    SessionState,
    SessionStates,
    publish_access_change,
    publish_revocation,
)
from backend.auth.schemas import (
    AdminUserUpdate,
    ApiKeyView,
    ChangeEmail,
    CreatedApiKey,
    DeleteMe,
    NewApiKey,
    SessionView,
    SignUp,
    TokenResponse,
    TotpSecret,
    UpdateMe,
    UserView,
)
from backend.auth.scopes import DEFAULT_SCOPES
from backend.auth.secrets import (
    API_KEY_PREFIX,
    REFRESH_TOKEN_PREFIX,
    AccessClaims,
    InvalidAccessToken,
    hash_password,
    hash_token,
    issue_access_token,
    new_token,
    password_needs_rehash,
    read_access_token,
    verify_password,
)
from backend.config import Settings
from backend.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Rejected,
    TooMany,
    Unauthenticated,
)
from backend.identity import ClientInfo, Principal
from backend.inputs import utc_field
from backend.lib.clock import Clock
from backend.lib.counters import count_in_window
from backend.mail.service import Mailer, MailMessage
from backend.paging import Paging

log = logging.getLogger(__name__)

SESSION_STATE_KEY = "litebase:auth:session:{}"
GRACE_RESPONSE_KEY = "litebase:auth:refresh-grace:{}"
SIGNIN_FAILURES_KEY = "litebase:auth:signin-failures:{}"
MFA_PENDING_KEY = "litebase:auth:mfa-pending:{}"  # a first factor passed, awaiting the code
MFA_TOKEN_PREFIX = "lbm_"  # noqa: S105 - a prefix, not a secret
# An active session is cached as b"<user id> <role> <org id or ->" (its SessionOwner).
REVOKED = b"0"
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
VERIFY_EMAIL, PASSWORD_RESET, EMAIL_CHANGE = "verify_email", "password_reset", "email_change"
SIGN_IN_CODE = "sign_in_code"
SIGN_IN_CODE_DIGITS = 6


def known_principal(
    bearer: str, settings: Settings, clock: Clock, states: SessionStates
) -> Principal | None:
    """The caller of an access token whose session this process knows to be active, from
    memory alone; None when that takes Redis or the database (an API key, a session not known
    here) or the token is refused (``AuthService.authenticate`` says why)."""
    if bearer.startswith(API_KEY_PREFIX):
        return None
    try:
        claims = _access_claims(bearer, settings, clock)
    except InvalidAccessToken:
        return None
    owner = states.get(claims.sid)
    if not owner or owner[0] != claims.sub or owner[2] != claims.org:
        return None
    return _principal_of(claims, owner[1])


def _access_claims(bearer: str, settings: Settings, clock: Clock) -> AccessClaims:
    return read_access_token(
        bearer,
        secret_key=settings.secret_key,
        now=clock.now(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def _principal_of(claims: AccessClaims, role: str) -> Principal:
    """The caller of a checked token; ``role`` is the user's, from the database."""
    return Principal(
        user_id=claims.sub,
        role=role,
        org_id=claims.org,
        session_id=claims.sid,
        expires_at=claims.exp,
    )


async def forget_session_states(redis: Redis, session_ids: Iterable[UUID]) -> None:
    """Drop the sessions' cached states from Redis (their org changed: a member removed, an
    org deleted); each process drops its own on hearing the ``member`` change."""
    keys = [SESSION_STATE_KEY.format(session_id) for session_id in session_ids]
    if keys:
        await redis.delete(*keys)


def _encode_state(state: SessionState) -> bytes:
    return REVOKED if not state else f"{state[0]} {state[1]} {state[2] or '-'}".encode()


def _decode_state(raw: bytes | str | None) -> SessionState | None:
    """None when absent or unreadable (an older format): the database decides."""
    text = raw.decode() if isinstance(raw, bytes) else (raw or "")
    if text == REVOKED.decode():
        return False
    try:
        user_id, role, org = text.split(" ")
        return (UUID(user_id), role, None if org == "-" else UUID(org))
    except ValueError:
        return None


def unauthorized(detail: str, code: str) -> Unauthenticated:
    return Unauthenticated(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


def _sign_in_code_hash(user_id: UUID, code: str) -> str:
    # Six digits repeat across accounts: the account is part of what is hashed.
    return hash_token(f"{user_id}:{code}")


def _wrong_code() -> Invalid:
    return Invalid(
        "The code is not right, or was used already",
        errors=[{"field": "code", "message": "incorrect", "source": "body"}],
    )


def _clear_totp(user: User) -> None:
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None


def _email_taken(field: str) -> Conflict:
    return Conflict(
        "An account with this email already exists",
        code="email_taken",
        errors=[{"field": field, "message": "already registered", "source": "body"}],
    )


async def require_verified(db: AsyncSession, settings: Settings, user_id: UUID, what: str) -> None:
    """Refuse ``what`` to an account whose email is unverified, unless settings allow it:
    whoever signed up with someone else's address must not keep keys or orgs behind."""
    if settings.unverified_may_act:
        return
    verified = await db.scalar(select(User.email_verified).where(User.id == user_id))
    if not verified:
        raise Forbidden(f"Verify your email address before you {what}", code="email_not_verified")


def invalid_grant(detail: str) -> Unauthenticated:
    return Unauthenticated(detail, code="invalid_grant")


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        email_verified=user.email_verified,
        created_at=user.created_at,
        totp_enabled=user.totp_enabled_at is not None,
    )


def _scope_problem(field: str, message: str) -> Invalid:
    return Invalid(
        f"The new key's {field} are {message}",
        errors=[{"field": field, "message": message, "source": "body"}],
    )


def api_key_view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        service=key.is_service,
        org_id=key.org_id,
        scopes=list(key.scopes),
        collections=None if key.collections is None else list(key.collections),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
    )


class UserService(SQLAlchemyAsyncRepositoryService[User]):
    class Repo(SQLAlchemyAsyncRepository[User]):
        model_type = User

    repository_type = Repo

    async def get_by_email(self, email: str) -> User | None:
        return await self.get_one_or_none(func.lower(User.email) == email.strip().lower())


class AuthService:
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

    # --- sign-up, sign-in, refresh -------------------------------------------------------

    async def _new_user(self, data: SignUp) -> User | None:
        """The account the sign-up makes; None if its address has one (nothing is kept)."""
        password_hash = await asyncio.to_thread(hash_password, data.password)
        name = None if data.name is None else data.name.strip()
        user = User(email=data.email.strip(), name=name, password_hash=password_hash)
        self.db.add(user)
        try:
            await self.db.flush()
        except IntegrityError:
            await self.db.rollback()
            return None
        return user

    async def sign_up(self, data: SignUp, client: ClientInfo) -> TokenResponse:
        user = await self._new_user(data)
        if user is None:
            raise _email_taken("email")
        response = await self._open_session(user, None, client)
        await self._send_email_token(user, VERIFY_EMAIL)
        return response

    async def sign_up_by_mail(self, data: SignUp) -> None:
        """A sign-up while verification is required, done after the answer (the same for every
        address, so it tells nobody which have accounts): a new address gets its account and
        a verification mail; one that has an account gets a mail saying so, to its owner."""
        existing = await self.users.get_by_email(data.email.strip())
        if existing is not None:
            base = self.settings.public_url.rstrip("/")
            await self.mailer.send(
                MailMessage(
                    to=existing.email,
                    subject="You already have an account",
                    text=(
                        "Someone, maybe you, tried to sign up with this address, which already "
                        "has an account. Sign in, or if you forgot your password, ask for a "
                        f"reset: POST {base}/auth/password/forgot.\n"
                        "If it was not you, ignore this mail: nothing changed."
                    ),
                )
            )
            return
        user = await self._new_user(data)
        if user is None:  # the same address signed up at the same moment: one is enough
            return
        await self._send_email_token(user, VERIFY_EMAIL)

    async def sign_in(
        self, email: str, password: str, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        failures_key = await self._count_attempt(email, client)
        user = await self.users.get_by_email(email)
        # Unknown email, wrong password and a disabled account all look the same, and cost
        # the same: verify_password hashes against a dummy when there is no user.
        matches = await asyncio.to_thread(
            verify_password, user.password_hash if user else None, password
        )
        if user is None or not matches or user.disabled:
            raise unauthorized("Email or password is incorrect", "invalid_credentials")
        await self.redis.delete(failures_key)
        if self.settings.auth_require_verified_email and not user.email_verified:
            raise Forbidden(
                "Verify your email address before signing in", code="email_not_verified"
            )
        if user.password_hash and password_needs_rehash(user.password_hash):
            user.password_hash = await asyncio.to_thread(hash_password, password)
        return await self._after_first_factor(user, org_id, client)

    async def _after_first_factor(
        self, user: User, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Tokens now, or, with two-factor sign-in on, a 401 ``mfa_required`` carrying a
        single-use ``mfa_token`` to send back with the app's code (grant_type mfa)."""
        if user.totp_enabled_at is None:
            return await self._open_session(user, org_id, client)
        await self.db.commit()  # what the first factor changed (a rehash, a verified email)
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
        )

    async def sign_in_with_totp(
        self, mfa_token: str, code: str, client: ClientInfo
    ) -> TokenResponse:
        """The second step: the app's code for the account whose first factor passed."""
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
        failures_key = await self._count_attempt(user.email, client)
        step = self._totp_step(user, code)
        if step is None:
            raise unauthorized("The code is not right, or was used already", "invalid_code")
        user.totp_last_step = step
        await self.redis.delete(key, failures_key)
        org_id = UUID(pending["org"]) if pending["org"] else None
        return await self._open_session(user, org_id, client)

    def _totp_step(self, user: User, code: str) -> int | None:
        """The time step ``code`` is valid for, if it is and is newer than the last one used."""
        secret = totp.unseal(self.settings.secret_key, user.totp_secret or "")
        if secret is None:
            return None
        step = totp.matching_step(secret, code, self.clock.now())
        if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
            return None
        return step

    async def enroll_totp(self, principal: Principal, password: str) -> TotpSecret:
        """A new secret for the authenticator app; in force once a code confirms it."""
        user = await self.get_user(principal)
        await self._check_password(
            user, password, "Setting up two-factor sign-in needs the account's password"
        )
        if user.totp_enabled_at is not None:
            raise Conflict(
                "Two-factor sign-in is on already; turn it off first", code="totp_enabled"
            )
        secret = totp.new_secret()
        user.totp_secret, user.totp_last_step = totp.seal(self.settings.secret_key, secret), None
        await self.db.commit()
        uri = totp.provisioning_uri(secret, user.email, self.settings.totp_issuer)
        return TotpSecret(secret=secret, otpauth_uri=uri)

    async def enable_totp(self, principal: Principal, code: str) -> User:
        user = await self.get_user(principal)
        if user.totp_enabled_at is not None:
            raise Conflict("Two-factor sign-in is on already", code="totp_enabled")
        if user.totp_secret is None:
            raise Conflict("Set it up first (POST /auth/mfa/totp)", code="totp_not_enrolled")
        step = self._totp_step(user, code)
        if step is None:
            raise _wrong_code()
        user.totp_enabled_at, user.totp_last_step = self.clock.now(), step
        await self.db.commit()
        return user

    async def disable_totp(self, principal: Principal, code: str) -> None:
        user = await self.get_user(principal)
        if user.totp_enabled_at is None:
            raise Conflict("Two-factor sign-in is off", code="totp_not_enabled")
        if self._totp_step(user, code) is None:
            raise _wrong_code()
        _clear_totp(user)
        await self.db.commit()

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

    async def send_sign_in_code(self, email: str) -> None:
        """Mail a one-time sign-in code to an account's address (nothing, and the same answer,
        when there is no such account). A new code replaces the ones sent before."""
        user = await self.users.get_by_email(email)
        if user is None or user.disabled:
            return
        await self.db.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user.id,
                EmailToken.purpose == SIGN_IN_CODE,
                EmailToken.used_at.is_(None),
            )
            .values(used_at=self.clock.now())
        )
        code = f"{secrets.randbelow(10**SIGN_IN_CODE_DIGITS):0{SIGN_IN_CODE_DIGITS}d}"
        ttl = self.settings.sign_in_code_ttl_seconds
        await self._store_email_token(user, SIGN_IN_CODE, ttl, _sign_in_code_hash(user.id, code))
        await self.mailer.send(
            MailMessage(
                to=user.email,
                subject=f"Your sign-in code: {code}",
                text=(
                    f"Sign in with this code:\n\n{code}\n\n"
                    f"It works once, for {max(ttl // 60, 1)} minutes. If you did not ask for it,"
                    " ignore this mail: nobody can sign in without it."
                ),
            )
        )

    async def sign_in_with_code(
        self, email: str, code: str, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        failures_key = await self._count_attempt(email, client)
        user = await self.users.get_by_email(email)
        found = None
        if user is not None and not user.disabled:
            found = await self._usable_email_token(_sign_in_code_hash(user.id, code), SIGN_IN_CODE)
        if user is None or found is None:
            raise unauthorized("Email or code is incorrect, used or expired", "invalid_credentials")
        await self.redis.delete(failures_key)
        found.used_at = self.clock.now()
        await self.prove_mailbox(user)  # the code reached this mailbox
        return await self._after_first_factor(user, org_id, client)

    async def refresh(self, refresh_token: str, org_id: UUID | None) -> TokenResponse:
        token_hash = hash_token(refresh_token)
        # The row lock makes concurrent refreshes with one token take turns: the first
        # rotates, the others find it rotated and get the first one's answer from Redis.
        found = (
            await self.db.execute(
                select(RefreshToken, AuthSession)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .where(RefreshToken.token_hash == token_hash)
                .with_for_update(of=RefreshToken)
            )
        ).first()
        if found is None:
            raise invalid_grant("The refresh token is not valid")
        token, session = found
        now = self.clock.now()
        if session.revoked_at is not None or session.expires_at <= now:
            raise invalid_grant("The session has ended; sign in again")
        if token.rotated_at is not None:
            return await self._replayed(token, session, token_hash, now)
        user = await self.db.get(User, session.user_id)
        if user is None or user.disabled:
            await self._revoke(session, now)
            await self.db.commit()
            raise invalid_grant("The session has ended; sign in again")
        if org_id is not None and org_id != session.org_id:
            await self._require_membership(user.id, org_id)
            session.org_id = org_id
            # The previous org's tokens end with the switch (here at once, elsewhere within
            # SESSION_CACHE_SECONDS): a token's org is its session's.
            switched: SessionState = (user.id, user.role, org_id)
            self.states.put(session.id, switched)
            await self._cache_session_state(session.id, switched)
        token.rotated_at = now
        new_refresh = new_token(REFRESH_TOKEN_PREFIX)
        self.db.add(
            RefreshToken(session_id=session.id, token_hash=hash_token(new_refresh), created_at=now)
        )
        session.last_used_at = now
        session.expires_at = now + timedelta(days=self.settings.session_idle_timeout_days)
        response = self._token_response(user, session, new_refresh, now)
        await self.redis.set(
            GRACE_RESPONSE_KEY.format(token_hash),
            msgspec.json.encode(response),
            ex=self.settings.refresh_reuse_grace_seconds + 5,
        )
        await self.db.commit()
        return response

    async def _replayed(
        self, token: RefreshToken, session: AuthSession, token_hash: str, now: datetime
    ) -> TokenResponse:
        assert token.rotated_at is not None
        if now - token.rotated_at <= timedelta(seconds=self.settings.refresh_reuse_grace_seconds):
            cached = await self.redis.get(GRACE_RESPONSE_KEY.format(token_hash))
            await self.db.rollback()
            if cached is not None:
                return msgspec.json.decode(cached, type=TokenResponse)
            raise invalid_grant("The refresh token was just rotated; use the new one")
        log.warning("refresh token replayed after rotation; revoking session %s", session.id)
        await self._revoke(session, now)
        await self.db.commit()
        raise invalid_grant("This refresh token was already used; the session has been signed out")

    async def _open_session(
        self, user: User, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
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
        await self.db.commit()
        await self._cache_session_state(session.id, (user.id, user.role, session.org_id))
        return self._token_response(user, session, refresh, now)

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

    # --- who is calling --------------------------------------------------------------------

    async def authenticate(self, bearer: str) -> Principal:
        if bearer.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(bearer)
        try:
            claims = _access_claims(bearer, self.settings, self.clock)
        except InvalidAccessToken as exc:
            raise unauthorized(f"The access token is not valid: {exc}", "invalid_token") from exc
        owner = await self._session_owner(claims.sid)
        if owner and owner[2] != claims.org:  # the session switched org since it was cached
            owner = await self._session_owner(claims.sid, fresh=True)
        if not owner:
            raise unauthorized("The session has ended; sign in again", "session_ended")
        if owner[0] != claims.sub:  # a forged token: a real session, someone else's sub
            raise unauthorized("The access token is not valid", "invalid_token")
        if owner[2] != claims.org:  # removed from the org, or the session acts in another now
            raise unauthorized(
                "The access token's org is no longer its session's (you left it, were removed,"
                " or switched); refresh for a new token",
                "org_changed",
            )
        return _principal_of(claims, owner[1])

    async def _authenticate_api_key(self, secret: str) -> Principal:
        """The key's user, checked on every use: still enabled, still a member of the key's org,
        still an admin for a service key (one query)."""
        member = exists().where(
            OrgMember.org_id == ApiKey.org_id, OrgMember.user_id == ApiKey.user_id
        )
        found = (
            await self.db.execute(
                select(ApiKey, User, member.label("member"))
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == hash_token(secret), ApiKey.revoked_at.is_(None))
            )
        ).first()
        now = self.clock.now()
        if found is None:
            raise unauthorized("The API key is not valid", "invalid_token")
        key, user, is_member = found
        if (
            user.disabled
            or (key.expires_at is not None and key.expires_at <= now)
            or (key.org_id is not None and not is_member)
            or (key.is_service and user.role != "admin")
        ):
            raise unauthorized("The API key is not valid", "invalid_token")
        if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
            await self.db.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
            )
            await self.db.commit()
        return Principal(
            user_id=user.id,
            role=user.role,
            org_id=key.org_id,
            api_key_id=key.id,
            is_service=key.is_service,
            expires_at=int(key.expires_at.timestamp()) if key.expires_at else None,
            scopes=frozenset(key.scopes),
            collections=None if key.collections is None else frozenset(key.collections),
        )

    async def _session_owner(self, session_id: UUID, *, fresh: bool = False) -> SessionState:
        """The user, role and org of an active session (False when it has ended): from memory,
        else Redis, else (or when ``fresh``) the database."""
        known = None if fresh else self.states.get(session_id)
        if known is not None:
            return known
        state = (
            None
            if fresh
            else _decode_state(await self.redis.get(SESSION_STATE_KEY.format(session_id)))
        )
        if state is None:
            found = (
                await self.db.execute(
                    select(AuthSession, User)
                    .join(User, User.id == AuthSession.user_id)
                    .where(AuthSession.id == session_id)
                )
            ).first()
            state = False
            if found is not None:
                session, user = found
                if (
                    session.revoked_at is None
                    and session.expires_at > self.clock.now()
                    and not user.disabled
                ):
                    state = (user.id, user.role, session.org_id)
            await self._cache_session_state(session_id, state)
        self.states.put(session_id, state)
        return state

    async def _cache_session_state(self, session_id: UUID, state: SessionState) -> None:
        # Kept as long as an access token lives, so a revoked session stays refused.
        await self.redis.set(
            SESSION_STATE_KEY.format(session_id),
            _encode_state(state),
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
        someone's email, wait for them to use it): every session but ``keep`` and every key of
        it end."""
        if user.email_verified:
            return
        user.email_verified = True
        await self._revoke_sessions_of(user.id, keep=keep)
        await self._revoke_keys_of(user.id)

    # --- me and my sessions ----------------------------------------------------------------

    async def get_user(self, principal: Principal) -> User:
        user = await self.db.get(User, principal.user_id)
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        return user

    async def update_me(self, principal: Principal, data: UpdateMe) -> User:
        user = await self.get_user(principal)
        if data.name is not None:
            user.name = data.name.strip()
        if data.new_password is not None:
            await self._check_password(
                user,
                data.current_password,
                "Changing the password needs the current password",
                field="current_password",
            )
            user.password_hash = await asyncio.to_thread(hash_password, data.new_password)
            await self._revoke_sessions_of(user.id, keep=principal.session_id)
            await self._end_mailed_tokens(user.id)
        await self.db.commit()
        return user

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

    async def delete_me(self, principal: Principal, data: DeleteMe) -> None:
        """Delete the caller's account, once its password is confirmed (see delete_user)."""
        user = await self.get_user(principal)
        await self._check_password(user, data.password, "Deleting the account needs its password")
        await self._delete_user(user)

    async def admin_delete_user(self, user_id: UUID) -> None:
        user = await self.db.get(User, user_id)
        if user is None:
            raise NotFound("No such user", code="not_found")
        await self._delete_user(user)

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
        await self.db.commit()
        await publish_access_change(self.redis, "keys", user.id)  # deleted with the account

    async def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise Rejected(
                "API keys have no session; revoke the key with DELETE /auth/api-keys/{id}",
                code="no_session",
            )
        session = await self.db.get(AuthSession, principal.session_id)
        if session is not None:
            await self._revoke(session, self.clock.now())
            await self.db.commit()

    async def list_sessions(self, principal: Principal) -> list[SessionView]:
        sessions = (
            await self.db.scalars(
                select(AuthSession)
                .where(
                    AuthSession.user_id == principal.user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > self.clock.now(),
                )
                .order_by(AuthSession.last_used_at.desc())
            )
        ).all()
        return [
            SessionView(
                id=s.id,
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                user_agent=s.user_agent,
                ip=s.ip,
                org_id=s.org_id,
                current=s.id == principal.session_id,
            )
            for s in sessions
        ]

    async def revoke_session(self, principal: Principal, session_id: UUID) -> None:
        session = await self.db.get(AuthSession, session_id)
        if session is None or session.user_id != principal.user_id:
            raise NotFound("No such session", code="not_found")
        await self._revoke(session, self.clock.now())
        await self.db.commit()

    # --- email flows -----------------------------------------------------------------------

    async def _issue_email_token(
        self, user: User, purpose: str, ttl: int, *, new_email: str | None = None
    ) -> str:
        """A new single-use token, stored hashed and committed; the caller mails it."""
        token = new_token()
        await self._store_email_token(user, purpose, ttl, hash_token(token), new_email=new_email)
        return token

    async def _store_email_token(
        self, user: User, purpose: str, ttl: int, token_hash: str, *, new_email: str | None = None
    ) -> None:
        self.db.add(
            EmailToken(
                user_id=user.id,
                purpose=purpose,
                token_hash=token_hash,
                expires_at=self.clock.now() + timedelta(seconds=ttl),
                new_email=new_email,
            )
        )
        await self.db.commit()

    async def _usable_email_token(self, token_hash: str, purpose: str) -> EmailToken | None:
        """The unused, unexpired token with this hash, locked for the caller's transaction."""
        found: EmailToken | None = await self.db.scalar(
            select(EmailToken)
            .where(
                EmailToken.token_hash == token_hash,
                EmailToken.purpose == purpose,
                EmailToken.used_at.is_(None),
                EmailToken.expires_at > self.clock.now(),
            )
            .with_for_update()
        )
        return found

    async def _send_email_token(self, user: User, purpose: str) -> None:
        ttl = (
            self.settings.verify_token_ttl_seconds
            if purpose == VERIFY_EMAIL
            else self.settings.reset_token_ttl_seconds
        )
        token = await self._issue_email_token(user, purpose, ttl)
        base = self.settings.public_url.rstrip("/")
        if purpose == VERIFY_EMAIL:
            subject = "Confirm your email address"
            text = (
                f"Confirm your email address with this token:\n\n{token}\n\n"
                f'POST {base}/auth/verify with {{"token": "{token}"}}.\n'
                f"It expires in {ttl // 3600} hours. If you did not sign up, ignore this mail."
            )
        else:
            subject = "Reset your password"
            text = (
                f"Reset your password with this token:\n\n{token}\n\n"
                f"POST {base}/auth/password/reset with "
                f'{{"token": "{token}", "new_password": "…"}}.\n'
                f"It expires in {max(ttl // 60, 1)} minutes and works once. "
                "If you did not ask for it, ignore this mail: your password is unchanged."
            )
        await self.mailer.send(MailMessage(to=user.email, subject=subject, text=text))

    async def _use_email_token(self, token: str, purpose: str) -> User:
        found = await self._take_email_token(token, purpose)
        user = await self.db.get(User, found.user_id)
        assert user is not None  # the foreign key cascades deletes
        return user

    async def _take_email_token(self, token: str, purpose: str) -> EmailToken:
        """The token's row, marked used (in the caller's transaction); 400 if it can't be."""
        found = await self._usable_email_token(hash_token(token), purpose)
        if found is None:
            raise Rejected(
                "The token is not valid, already used, or expired",
                code="invalid_token",
                errors=[{"field": "token", "message": "invalid or expired", "source": "body"}],
            )
        found.used_at = self.clock.now()
        return found

    async def request_email_change(self, principal: Principal, data: ChangeEmail) -> None:
        """Mail a token to the new address (the switch waits for it) and a notice to the old."""
        user = await self.get_user(principal)
        await self._check_password(
            user, data.password, "Changing the email needs the account's password"
        )
        new_email = data.new_email.strip()
        if new_email.lower() == user.email.lower():
            raise Invalid(
                "That is already the account's email address",
                errors=[{"field": "new_email", "message": "unchanged", "source": "body"}],
            )
        if await self.users.get_by_email(new_email) is not None:
            raise _email_taken("new_email")
        ttl = self.settings.verify_token_ttl_seconds
        token = await self._issue_email_token(user, EMAIL_CHANGE, ttl, new_email=new_email)
        base = self.settings.public_url.rstrip("/")
        await self.mailer.send(
            MailMessage(
                to=new_email,
                subject="Confirm your new email address",
                text=(
                    f"Confirm the new email address of your account with this token:\n\n"
                    f"{token}\n\n"
                    f'POST {base}/auth/email/confirm with {{"token": "{token}"}}.\n'
                    f"It expires in {max(ttl // 3600, 1)} hours and works once. If you did not"
                    " ask for it, ignore this mail."
                ),
            )
        )
        await self.mailer.send(
            MailMessage(
                to=user.email,
                subject="Your email address is being changed",
                text=(
                    f"Someone signed in to your account asked to change its email address to"
                    f" {new_email}. It changes only once that address confirms it. If it was"
                    " not you, change your password now: that signs out every other session."
                ),
            )
        )

    async def confirm_email_change(self, token: str) -> User:
        found = await self._take_email_token(token, EMAIL_CHANGE)
        user = await self.db.get(User, found.user_id)
        assert user is not None and found.new_email is not None
        user.email, user.email_verified = found.new_email, True  # the token reached it
        try:
            await self.db.commit()
        except IntegrityError:  # the address was taken after the token was sent
            await self.db.rollback()
            raise _email_taken("token") from None
        return user

    async def request_verification(self, principal: Principal) -> None:
        user = await self.get_user(principal)
        if not user.email_verified:
            await self._send_email_token(user, VERIFY_EMAIL)

    async def confirm_verification(self, token: str, principal: Principal | None) -> User:
        """The verification mail reached the account's mailbox; a session of the same account
        confirming it is kept (every other session and key ends: ``prove_mailbox``)."""
        user = await self._use_email_token(token, VERIFY_EMAIL)
        keep = principal.session_id if principal and principal.user_id == user.id else None
        await self.prove_mailbox(user, keep=keep)
        await self.db.commit()
        return user

    async def forgot_password(self, email: str) -> None:
        user = await self.users.get_by_email(email)
        if user is not None and not user.disabled:
            await self._send_email_token(user, PASSWORD_RESET)

    async def reset_password(self, token: str, new_password: str) -> None:
        user = await self._use_email_token(token, PASSWORD_RESET)
        user.password_hash = await asyncio.to_thread(hash_password, new_password)
        user.email_verified = True  # the reset mail reached them
        await self._revoke_sessions_of(user.id)
        await self._revoke_keys_of(user.id)
        await self._end_mailed_tokens(user.id)
        await self.db.commit()

    # --- API keys --------------------------------------------------------------------------

    async def create_api_key(
        self, principal: Principal, data: NewApiKey, served: frozenset[str]
    ) -> CreatedApiKey:
        """A key for the caller; ``served``: the collections an allow-list may name."""
        if data.service and not principal.is_admin:
            raise Forbidden("Only admins can create service keys", code="forbidden")
        await require_verified(self.db, self.settings, principal.user_id, "create API keys")
        scopes = sorted(set(data.scopes or DEFAULT_SCOPES))
        collections = None if data.collections is None else sorted(set(data.collections))
        for index, name in enumerate(data.collections or ()):
            if name not in served:
                raise Invalid(
                    f"No collection is named {name!r}",
                    errors=[
                        {
                            "field": f"collections[{index}]",
                            "message": "no such collection",
                            "source": "body",
                        }
                    ],
                )
        if principal.scopes is not None:  # a key minting a key: never wider than itself
            if "keys" not in principal.scopes:
                raise Forbidden(
                    "This API key may not create keys (no 'keys' scope)", code="forbidden"
                )
            if not set(scopes) <= principal.scopes:
                raise _scope_problem("scopes", "wider than the key that creates it")
            if principal.collections is not None and (
                collections is None or not set(collections) <= principal.collections
            ):
                raise _scope_problem("collections", "wider than the key that creates it")
        now = self.clock.now()
        expires_at = None if data.expires_at is None else utc_field(data.expires_at, "expires_at")
        if expires_at is not None and expires_at <= now:
            raise Invalid(
                "expires_at must be in the future",
                errors=[{"field": "expires_at", "message": "in the past", "source": "body"}],
            )
        org_id = data.org_id or principal.org_id
        if org_id is not None:  # the token's org too: membership may have ended since
            await self._require_membership(principal.user_id, org_id)
        secret = new_token(API_KEY_PREFIX)
        key = ApiKey(
            user_id=principal.user_id,
            name=data.name.strip(),
            prefix=secret[:10],
            key_hash=hash_token(secret),
            is_service=data.service,
            org_id=org_id,
            expires_at=expires_at,
            scopes=scopes,
            collections=collections,
        )
        self.db.add(key)
        await self.db.flush()
        await self.db.refresh(key)
        view = api_key_view(key)
        await self.db.commit()
        return CreatedApiKey(key=secret, api_key=view)

    async def list_api_keys(self, principal: Principal) -> list[ApiKeyView]:
        keys = await self.db.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == principal.user_id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.created_at)
        )
        return [api_key_view(key) for key in keys]

    async def revoke_api_key(self, principal: Principal, key_id: UUID) -> None:
        key = await self.db.get(ApiKey, key_id)
        if key is None or key.user_id != principal.user_id or key.revoked_at is not None:
            raise NotFound("No such API key", code="not_found")
        key.revoked_at = self.clock.now()
        await self.db.commit()
        await publish_access_change(self.redis, "key", key.id)

    # --- admin -----------------------------------------------------------------------------

    async def list_users(
        self, paging: Paging, *, search: str | None = None, role: str | None = None
    ) -> tuple[list[User], int]:
        """Users, oldest first; ``search`` matches email or name (any case, wildcards literal)."""
        filters: list[StatementFilter] = [
            OrderBy("created_at", "asc"),
            LimitOffset(limit=paging.limit, offset=paging.offset),
        ]
        if search:
            filters.append(
                SearchFilter({"email", "name"}, search, ignore_case=True, escape_wildcards=True)
            )
        if role:
            filters.append(CollectionFilter("role", [role]))
        users, total = await self.users.list_and_count(*filters)
        return list(users), total

    async def admin_update_user(self, user_id: UUID, data: AdminUserUpdate) -> User:
        user = await self.db.get(User, user_id)
        if user is None:
            raise NotFound("No such user", code="not_found")
        if data.role is not None and data.role != user.role:
            user.role = data.role
            # Access tokens carry the role: make the user sign in again to pick it up.
            await self._revoke_sessions_of(user.id)
            await self._revoke_keys_of(user.id)
        if data.reset_totp:
            _clear_totp(user)
        if data.disabled is not None:
            user.disabled = data.disabled
            if data.disabled:
                await self._revoke_sessions_of(user.id)
                await self._revoke_keys_of(user.id)
        await self.db.commit()
        return user


async def ensure_admin(db: AsyncSession, email: str, password: str) -> User:
    """Create an admin with this email, or make the existing user an admin with this password."""
    users = UserService(session=db)
    user = await users.get_by_email(email)
    password_hash = await asyncio.to_thread(hash_password, password)
    if user is None:
        user = User(email=email.strip(), password_hash=password_hash, role="admin")
        db.add(user)
    else:
        user.role, user.password_hash, user.disabled = "admin", password_hash, False
    user.email_verified = True
    await db.commit()
    return user
