"""Sessions and tokens: password sign-in, refresh (rotation with a grace window), who is
calling (access tokens and API keys), logout and my sessions."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from uuid import UUID

import msgspec
from sqlalchemy import exists, select, update

from backend.auth.access import SESSION_STATE_KEY, access_claims, decode_state, principal_of
from backend.auth.core import (
    API_KEY_TOUCH_INTERVAL,
    GRACE_RESPONSE_KEY,
    AuthCore,
    invalid_grant,
    log,
    unauthorized,
)
from backend.auth.models import ApiKey, AuthSession, OrgMember, RefreshToken, User
from backend.auth.revocations import SessionState
from backend.auth.revoking import Revoker
from backend.auth.schemas import (
    SessionView,
    TokenResponse,
)
from backend.auth.secrets import (
    API_KEY_PREFIX,
    REFRESH_TOKEN_PREFIX,
    AccessClaims,
    InvalidAccessToken,
    hash_token,
    new_token,
)
from backend.auth.sign_ins import SignIns
from backend.errors import (
    Forbidden,
    NotFound,
    Rejected,
)
from backend.identity import ClientInfo, Principal
from backend.paging import Page, Paging, by_offset, page_by_offset


class Sessions:
    """Password sign-in, refresh, who is calling, logout and my sessions."""

    def __init__(self, core: AuthCore, sign_ins: SignIns, revoker: Revoker) -> None:
        self.core = core
        self.sign_ins = sign_ins
        self.revoker = revoker

    @classmethod
    def over(cls, core: AuthCore) -> Sessions:
        """The service over ``core``, with its collaborators made over it too."""
        return cls(core, SignIns(core), Revoker(core))

    async def sign_in(
        self, email: str, password: str, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        failures_key = await self.sign_ins.count_attempt(email, client)
        user = await self.core.users.get_by_email(email)
        # Unknown email, wrong password and a disabled account all look the same, and cost
        # the same: ``verify`` hashes against a dummy when there is no user.
        matches = await asyncio.to_thread(
            self.core.passwords.verify, user.password_hash if user else None, password
        )
        if user is None or not matches or user.disabled:
            raise unauthorized("Email or password is incorrect", "invalid_credentials")
        await self.core.redis.delete(failures_key)
        if self.core.settings.auth_require_verified_email and not user.email_verified:
            raise Forbidden(
                "Verify your email address before signing in", code="email_not_verified"
            )
        if user.password_hash and self.core.passwords.needs_rehash(user.password_hash):
            user.password_hash = await asyncio.to_thread(self.core.passwords.hash, password)
        return await self.sign_ins.after_first_factor(user, org_id, client)

    async def refresh(self, refresh_token: str, org_id: UUID | None) -> TokenResponse:
        token_hash = hash_token(refresh_token)
        # The row lock makes concurrent refreshes with one token take turns: the first
        # rotates, the others find it rotated and get the first one's answer from Redis.
        found = (
            await self.core.db.execute(
                select(RefreshToken, AuthSession)
                .join(AuthSession, AuthSession.id == RefreshToken.session_id)
                .where(RefreshToken.token_hash == token_hash)
                .with_for_update(of=RefreshToken)
            )
        ).first()
        if found is None:
            raise invalid_grant("The refresh token is not valid")
        token, session = found
        now = self.core.clock.now()
        if session.revoked_at is not None or session.expires_at <= now:
            raise invalid_grant("The session has ended; sign in again")
        if token.rotated_at is not None:
            return await self._replayed(token, session, token_hash, now)
        user = await self.core.db.get(User, session.user_id)
        if user is None or user.disabled:
            await self.revoker.revoke(session, now)
            raise invalid_grant("The session has ended; sign in again", keep_changes=True)
        if org_id is not None and org_id != session.org_id:
            await self.core.require_membership(user.id, org_id)
            session.org_id = org_id
            # The previous org's tokens end with the switch (here at once, elsewhere within
            # SESSION_CACHE_SECONDS): a token's org is its session's.
            switched: SessionState = (user.id, user.role, org_id)
            self.core.states.put(session.id, switched)
            await self.core.cache_session_state(session.id, switched)
        token.rotated_at = now
        new_refresh = new_token(REFRESH_TOKEN_PREFIX)
        self.core.db.add(
            RefreshToken(session_id=session.id, token_hash=hash_token(new_refresh), created_at=now)
        )
        session.last_used_at = now
        session.expires_at = now + timedelta(days=self.core.settings.session_idle_timeout_days)
        response = self.sign_ins.token_response(user, session, new_refresh, now)
        await self.core.redis.set(
            GRACE_RESPONSE_KEY.format(token_hash),
            msgspec.json.encode(response),
            ex=self.core.settings.refresh_reuse_grace_seconds + 5,
        )
        await self.core.db.flush()
        return response

    async def _replayed(
        self, token: RefreshToken, session: AuthSession, token_hash: str, now: datetime
    ) -> TokenResponse:
        assert token.rotated_at is not None
        if now - token.rotated_at <= timedelta(
            seconds=self.core.settings.refresh_reuse_grace_seconds
        ):
            cached = await self.core.redis.get(GRACE_RESPONSE_KEY.format(token_hash))
            if cached is not None:
                return msgspec.json.decode(cached, type=TokenResponse)
            raise invalid_grant("The refresh token was just rotated; use the new one")
        log.warning("refresh token replayed after rotation; revoking session %s", session.id)
        await self.revoker.revoke(session, now)
        raise invalid_grant(
            "This refresh token was already used; the session has been signed out",
            keep_changes=True,
        )

    async def authenticate(self, bearer: str) -> Principal:
        if bearer.startswith(API_KEY_PREFIX):
            return await self._authenticate_api_key(bearer)
        try:
            claims = access_claims(bearer, self.core.settings, self.core.clock)
        except InvalidAccessToken as exc:
            raise unauthorized(f"The access token is not valid: {exc}", "invalid_token") from exc
        return await self.session_principal(claims)

    async def session_principal(self, claims: AccessClaims) -> Principal:
        """The caller of verified token claims (an access token's, or a file token's: they
        carry the same), if its session is still active, its user's and in the same org."""
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
        return principal_of(claims, owner[1])

    async def _authenticate_api_key(self, secret: str) -> Principal:
        """The key's user, checked on every use: still enabled, still a member of the key's org,
        still an admin for a service key (one query)."""
        member = exists().where(
            OrgMember.org_id == ApiKey.org_id, OrgMember.user_id == ApiKey.user_id
        )
        found = (
            await self.core.db.execute(
                select(ApiKey, User, member.label("member"))
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == hash_token(secret), ApiKey.revoked_at.is_(None))
            )
        ).first()
        now = self.core.clock.now()
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
            await self.core.db.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
            )
            await self.core.db.flush()
        return Principal(
            user_id=user.id,
            role=user.role,
            org_id=key.org_id,
            api_key_id=key.id,
            is_service=key.is_service,
            is_anonymous=user.is_anonymous,
            expires_at=int(key.expires_at.timestamp()) if key.expires_at else None,
            scopes=frozenset(key.scopes),
            collections=None if key.collections is None else frozenset(key.collections),
        )

    async def _session_owner(self, session_id: UUID, *, fresh: bool = False) -> SessionState:
        """The user, role and org of an active session (False when it has ended): from memory,
        else Redis, else (or when ``fresh``) the database."""
        known = None if fresh else self.core.states.get(session_id)
        if known is not None:
            return known
        state = (
            None
            if fresh
            else decode_state(await self.core.redis.get(SESSION_STATE_KEY.format(session_id)))
        )
        if state is None:
            found = (
                await self.core.db.execute(
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
                    and session.expires_at > self.core.clock.now()
                    and not user.disabled
                ):
                    state = (user.id, user.role, session.org_id)
            await self.core.cache_session_state(session_id, state)
        self.core.states.put(session_id, state)
        return state

    async def logout(self, principal: Principal) -> None:
        if principal.session_id is None:
            raise Rejected(
                "API keys have no session; revoke the key with DELETE /auth/api-keys/{id}",
                code="no_session",
            )
        session = await self.core.db.get(AuthSession, principal.session_id)
        if session is not None:
            await self.revoker.revoke(session, self.core.clock.now())
            await self.core.db.flush()

    async def list_sessions(self, principal: Principal, paging: Paging) -> Page[SessionView]:
        sessions = await self.core.db.scalars(
            by_offset(
                select(AuthSession)
                .where(
                    AuthSession.user_id == principal.user_id,
                    AuthSession.revoked_at.is_(None),
                    AuthSession.expires_at > self.core.clock.now(),
                )
                .order_by(AuthSession.last_used_at.desc()),
                paging,
            )
        )

        def view(session: AuthSession) -> SessionView:
            copied = msgspec.convert(session, SessionView, from_attributes=True)
            return msgspec.structs.replace(copied, current=session.id == principal.session_id)

        return page_by_offset(sessions.all(), paging).map(view)

    async def revoke_session(self, principal: Principal, session_id: UUID) -> None:
        session = await self.core.db.get(AuthSession, session_id)
        if session is None or session.user_id != principal.user_id:
            raise NotFound("No such session", code="not_found")
        await self.revoker.revoke(session, self.core.clock.now())
        await self.core.db.flush()
