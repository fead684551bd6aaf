"""Two-factor sign-in with TOTP: enrol, turn on and off, and the mfa grant."""

from __future__ import annotations

from uuid import UUID

import msgspec

from backend.auth import totp
from backend.auth.core import (
    MFA_PENDING_KEY,
    AuthCore,
    _clear_totp,
    _wrong_code,
    invalid_grant,
    unauthorized,
)
from backend.auth.models import User
from backend.auth.schemas import (
    TokenResponse,
    TotpSecret,
)
from backend.auth.secrets import (
    hash_token,
)
from backend.errors import (
    Conflict,
)
from backend.identity import ClientInfo, Principal


class TwoFactor(AuthCore):
    """TOTP two-factor sign-in: enrol, turn on and off, the mfa grant."""

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
        await self.db.flush()
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
        await self.db.flush()
        return user

    async def disable_totp(self, principal: Principal, code: str) -> None:
        user = await self.get_user(principal)
        if user.totp_enabled_at is None:
            raise Conflict("Two-factor sign-in is off", code="totp_not_enabled")
        if self._totp_step(user, code) is None:
            raise _wrong_code()
        _clear_totp(user)
        await self.db.flush()
