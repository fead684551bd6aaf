"""What goes by mail: sign-in codes, email change, verification, password reset; and the
mailbox proven (``prove_mailbox``: a mailed token came back, so unverified access ends)."""

from __future__ import annotations

import asyncio
import secrets
from uuid import UUID

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from backend.auth.core import (
    EMAIL_CHANGE,
    PASSWORD_RESET,
    SIGN_IN_CODE,
    SIGN_IN_CODE_DIGITS,
    VERIFY_EMAIL,
    AuthCore,
    email_taken,
    unauthorized,
)
from backend.auth.email_tokens import EmailTokens
from backend.auth.models import EmailToken, Passkey, User
from backend.auth.revoking import Revoker
from backend.auth.schemas import (
    ChangeEmail,
    TokenResponse,
)
from backend.auth.secrets import (
    hash_token,
)
from backend.auth.sign_ins import SignIns
from backend.auth.standing import address_of, became_permanent
from backend.errors import (
    Invalid,
)
from backend.identity import ClientInfo, Principal
from backend.mail.compose import Mail, MailKind


def _sign_in_code_hash(user_id: UUID, code: str) -> str:
    # Six digits repeat across accounts: the account is part of what is hashed.
    return hash_token(f"{user_id}:{code}")


class MailedTokens:
    """Sign-in codes, email change, verification and password reset by mail; the mailbox
    proven."""

    def __init__(
        self, core: AuthCore, sign_ins: SignIns, revoker: Revoker, email_tokens: EmailTokens
    ) -> None:
        self.core = core
        self.sign_ins = sign_ins
        self.revoker = revoker
        self.email_tokens = email_tokens

    @classmethod
    def over(cls, core: AuthCore) -> MailedTokens:
        """The service over ``core``, with its collaborators made over it too."""
        return cls(core, SignIns(core), Revoker(core), EmailTokens(core))

    async def prove_mailbox(self, user: User, *, keep: UUID | None = None) -> None:
        """The account's mailbox answered (a verification, a sign-in code, an invitation). If
        the account was unverified, whoever signed it up may not own the address
        (pre-hijacking: sign up with someone's email, wait for them to use it): every session
        but ``keep``, every key and every passkey of it end."""
        if user.email_verified:
            return
        user.email_verified = True
        await self.revoker.revoke_sessions_of(user.id, keep=keep)
        await self.revoker.revoke_keys_of(user.id)
        await self.core.db.execute(delete(Passkey).where(Passkey.user_id == user.id))

    async def send_sign_in_code(self, email: str) -> None:
        """Mail a one-time sign-in code to an account's address (nothing, and the same answer,
        when there is no such account). A new code replaces the ones sent before."""
        user = await self.core.users.get_by_email(email)
        if user is None or user.disabled:
            return
        await self.core.db.execute(
            update(EmailToken)
            .where(
                EmailToken.user_id == user.id,
                EmailToken.purpose == SIGN_IN_CODE,
                EmailToken.used_at.is_(None),
            )
            .values(used_at=self.core.clock.now())
        )
        code = f"{secrets.randbelow(10**SIGN_IN_CODE_DIGITS):0{SIGN_IN_CODE_DIGITS}d}"
        ttl = self.core.settings.sign_in_code_ttl_seconds
        await self.email_tokens.store(user, SIGN_IN_CODE, ttl, _sign_in_code_hash(user.id, code))
        self.core.mail_user(user, MailKind.SIGN_IN_CODE, code=code, minutes=max(ttl // 60, 1))

    async def sign_in_with_code(
        self, email: str, code: str, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        failures_key = await self.sign_ins.count_attempt(email, client)
        user = await self.core.users.get_by_email(email)
        found = None
        if user is not None and not user.disabled:
            found = await self.email_tokens.usable(_sign_in_code_hash(user.id, code), SIGN_IN_CODE)
        if user is None or found is None:
            raise unauthorized("Email or code is incorrect, used or expired", "invalid_credentials")
        await self.core.redis.delete(failures_key)
        found.used_at = self.core.clock.now()
        await self.prove_mailbox(user)  # the code reached this mailbox
        return await self.sign_ins.after_first_factor(user, org_id, client)

    async def request_email_change(self, principal: Principal, data: ChangeEmail) -> None:
        """Mail a token to the new address (the switch waits for it) and a notice to the old."""
        user = await self.core.get_user(principal)
        old_email = address_of(user, "change its email")
        await self.core.check_password(
            user, data.password, "Changing the email needs the account's password"
        )
        new_email = data.new_email.strip()
        if new_email.lower() == old_email.lower():
            raise Invalid(
                "That is already the account's email address",
                errors=[{"field": "new_email", "message": "unchanged", "source": "body"}],
            )
        if await self.core.users.get_by_email(new_email) is not None:
            raise email_taken("new_email")
        ttl = self.core.settings.verify_token_ttl_seconds
        token = await self.email_tokens.issue(user, EMAIL_CHANGE, ttl, new_email=new_email)
        self.core.mail(
            Mail(
                kind=MailKind.EMAIL_CHANGE,
                to=new_email,
                locale=user.locale,
                values={"token": token, "hours": max(ttl // 3600, 1), "new_email": new_email},
            )
        )
        self.core.mail_user(user, MailKind.EMAIL_CHANGE_NOTICE, new_email=new_email)

    async def confirm_email_change(self, token: str) -> User:
        found = await self.email_tokens.take(token, EMAIL_CHANGE)
        user = await self.core.db.get(User, found.user_id)
        assert user is not None and found.new_email is not None
        user.email, user.email_verified = found.new_email, True  # the token reached it
        if user.is_anonymous:  # POST /auth/convert: its password is in force from now
            became_permanent(user)
        try:
            await self.core.db.flush()
        except IntegrityError:  # the address was taken after the token was sent
            raise email_taken("token") from None
        return user

    async def request_verification(self, principal: Principal) -> None:
        user = await self.core.get_user(principal)
        if not user.email_verified:
            await self.email_tokens.send(user, VERIFY_EMAIL)

    async def confirm_verification(self, token: str, principal: Principal | None) -> User:
        """The verification mail reached the account's mailbox; a session of the same account
        confirming it is kept (every other session and key ends: ``prove_mailbox``)."""
        user = await self.email_tokens.use(token, VERIFY_EMAIL)
        keep = principal.session_id if principal and principal.user_id == user.id else None
        await self.prove_mailbox(user, keep=keep)
        await self.core.db.flush()
        return user

    async def forgot_password(self, email: str) -> None:
        user = await self.core.users.get_by_email(email)
        if user is not None and not user.disabled:
            await self.email_tokens.send(user, PASSWORD_RESET)

    async def reset_password(self, token: str, new_password: str) -> None:
        user = await self.email_tokens.use(token, PASSWORD_RESET)
        user.password_hash = await asyncio.to_thread(self.core.passwords.hash, new_password)
        user.email_verified = True  # the reset mail reached them
        await self.revoker.revoke_sessions_of(user.id)
        await self.revoker.revoke_keys_of(user.id)
        await self.revoker.end_mailed_tokens(user.id)
        await self.core.db.flush()
