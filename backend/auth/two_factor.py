"""Two-factor sign-in with TOTP: enrol, turn on and off, the mfa grant, and the recovery codes
that stand in for the app's code when the phone is lost."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import totp
from backend.auth.core import AuthCore, unauthorized, wrong_code
from backend.auth.models import RecoveryCode, User
from backend.auth.recovery_codes import code_hash, new_codes
from backend.auth.schemas import (
    SecondFactor,
    TokenResponse,
    TotpSecret,
    TwoFactorStatus,
)
from backend.auth.sign_ins import SignIns
from backend.auth.standing import address_of
from backend.errors import (
    Conflict,
    Invalid,
)
from backend.identity import ClientInfo, Principal
from backend.mail.compose import MailKind, mail_time


def _wrong_recovery_code() -> Invalid:
    return Invalid(
        "The recovery code is not right, or was used already",
        errors=[{"field": "recovery_code", "message": "incorrect", "source": "body"}],
    )


async def turn_off_totp(db: AsyncSession, user: User) -> None:
    """Two-factor sign-in off: the app's secret and the recovery codes go (here, and when an
    admin resets it: backend/auth/admin.py)."""
    user.totp_secret = user.totp_enabled_at = user.totp_last_step = None
    await db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


class TwoFactor:
    """TOTP two-factor sign-in: enrol, turn on and off, the mfa grant, recovery codes."""

    def __init__(self, core: AuthCore, sign_ins: SignIns) -> None:
        self.core = core
        self.sign_ins = sign_ins

    @classmethod
    def over(cls, core: AuthCore) -> TwoFactor:
        """The service over ``core``, with its collaborator made over it too."""
        return cls(core, SignIns(core))

    async def sign_in_with_totp(
        self, mfa_token: str, code: str, client: ClientInfo
    ) -> TokenResponse:
        """The second step: the app's code for the account whose first factor passed."""
        key, org_id, user = await self.sign_ins.pending_mfa(mfa_token)
        failures_key = await self.sign_ins.count_attempt(address_of(user, "sign in"), client)
        step = self._totp_step(user, code)
        if step is None:
            raise unauthorized("The code is not right, or was used already", "invalid_code")
        user.totp_last_step = step
        await self.core.redis.delete(key, failures_key)
        return await self.sign_ins.open_session(user, org_id, client)

    async def sign_in_with_recovery_code(
        self, mfa_token: str, recovery_code: str, client: ClientInfo
    ) -> TokenResponse:
        """The second step with one of the account's recovery codes instead of the app's
        code: each works once, and using one mails the account."""
        key, org_id, user = await self.sign_ins.pending_mfa(mfa_token)
        failures_key = await self.sign_ins.count_attempt(address_of(user, "sign in"), client)
        left = await self._use_recovery_code(user, recovery_code)
        if left is None:
            raise unauthorized(
                "The recovery code is not right, or was used already", "invalid_code"
            )
        self._mail_recovery_code_used(user, left)
        await self.core.redis.delete(key, failures_key)
        return await self.sign_ins.open_session(user, org_id, client)

    def _totp_step(self, user: User, code: str) -> int | None:
        """The time step ``code`` is valid for, if it is and is newer than the last one used."""
        secret = totp.unseal(self.core.settings.secret_key, user.totp_secret or "")
        if secret is None:
            return None
        step = totp.matching_step(secret, code, self.core.clock.now())
        if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
            return None
        return step

    async def enroll_totp(self, principal: Principal, password: str) -> TotpSecret:
        """A new secret for the authenticator app; in force once a code confirms it."""
        user = await self.core.get_user(principal)
        email = address_of(user, "set up two-factor sign-in")
        await self.core.check_password(
            user, password, "Setting up two-factor sign-in needs the account's password"
        )
        if user.totp_enabled_at is not None:
            raise Conflict(
                "Two-factor sign-in is on already; turn it off first", code="totp_enabled"
            )
        secret = totp.new_secret()
        user.totp_secret, user.totp_last_step = (
            totp.seal(self.core.settings.secret_key, secret),
            None,
        )
        await self.core.db.flush()
        uri = totp.provisioning_uri(secret, email, self.core.settings.totp_issuer)
        return TotpSecret(secret=secret, otpauth_uri=uri)

    async def enable_totp(self, principal: Principal, code: str) -> tuple[User, list[str]]:
        """Two-factor sign-in on, and its ten recovery codes (shown this once)."""
        user = await self.core.get_user(principal)
        if user.totp_enabled_at is not None:
            raise Conflict("Two-factor sign-in is on already", code="totp_enabled")
        if user.totp_secret is None:
            raise Conflict("Set it up first (POST /auth/mfa/totp)", code="totp_not_enrolled")
        step = self._totp_step(user, code)
        if step is None:
            raise wrong_code()
        user.totp_enabled_at, user.totp_last_step = self.core.clock.now(), step
        codes = await self._new_recovery_codes(user)
        return user, codes

    async def disable_totp(self, principal: Principal, proof: SecondFactor) -> None:
        """Two-factor sign-in off, proven by the app's code or a recovery code (a lost phone:
        sign in with one code, turn it off with another, set it up again)."""
        user = await self._enabled(principal)
        await self._prove_second_factor(user, proof)
        await turn_off_totp(self.core.db, user)
        await self.core.db.flush()

    async def regenerate_recovery_codes(
        self, principal: Principal, proof: SecondFactor
    ) -> list[str]:
        """Ten new recovery codes for the old ones, proven by the app's code or a recovery
        code (the second factor itself: a stolen session that learnt the password cannot)."""
        user = await self._enabled(principal)
        await self._prove_second_factor(user, proof)
        return await self._new_recovery_codes(user)

    async def two_factor_status(self, principal: Principal) -> TwoFactorStatus:
        user = await self.core.get_user(principal)
        on = user.totp_enabled_at is not None
        left = await self._recovery_codes_left(user.id) if on else 0
        return TwoFactorStatus(totp_enabled=on, recovery_codes_left=left)

    async def _enabled(self, principal: Principal) -> User:
        user = await self.core.db.get(User, principal.user_id, with_for_update=True)
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        if user.totp_enabled_at is None:
            raise Conflict("Two-factor sign-in is off", code="totp_not_enabled")
        return user

    async def _prove_second_factor(self, user: User, proof: SecondFactor) -> None:
        """422 naming the field unless ``proof`` holds exactly one right code; a recovery code
        is spent, and mailed about."""
        if (proof.code is None) == (proof.recovery_code is None):
            raise Invalid(
                "Send the app's code or a recovery code (one of them)",
                errors=[{"field": "code", "message": "code or recovery_code", "source": "body"}],
            )
        if proof.recovery_code is not None:
            left = await self._use_recovery_code(user, proof.recovery_code)
            if left is None:
                raise _wrong_recovery_code()
            self._mail_recovery_code_used(user, left)
            return
        assert proof.code is not None
        step = self._totp_step(user, proof.code)
        if step is None:
            raise wrong_code()
        user.totp_last_step = step  # spent, as at sign-in

    async def _new_recovery_codes(self, user: User) -> list[str]:
        """Ten new codes for ``user``, replacing every one before; stored as keyed hashes."""
        await self.core.db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        codes = new_codes()
        now = self.core.clock.now()
        self.core.db.add_all(
            RecoveryCode(
                user_id=user.id,
                code_hash=code_hash(self.core.settings.secret_key, user.id, code),
                created_at=now,
            )
            for code in codes
        )
        await self.core.db.flush()
        return codes

    async def _use_recovery_code(self, user: User, code: str) -> int | None:
        """Spend one of ``user``'s unused codes, if ``code`` is one: how many are left then;
        None if it is not one (wrong, used, another account's)."""
        used = await self.core.db.scalar(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == code_hash(self.core.settings.secret_key, user.id, code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=self.core.clock.now())
            .returning(RecoveryCode.id)
        )
        if used is None:
            return None
        return await self._recovery_codes_left(user.id)

    async def _recovery_codes_left(self, user_id: UUID) -> int:
        left = await self.core.db.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return int(left or 0)

    def _mail_recovery_code_used(self, user: User, left: int) -> None:
        """Tell the account a recovery code was used, and how many are left, after commit."""
        self.core.mail_user(
            user, MailKind.RECOVERY_CODE_USED, when=mail_time(self.core.clock.now()), remaining=left
        )
