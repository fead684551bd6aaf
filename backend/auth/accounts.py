"""Accounts: sign-up (at once, or by mail when verification is required), my account,
changing it, deleting it."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import IntegrityError

from backend.auth.core import (
    VERIFY_EMAIL,
    AuthCore,
    email_taken,
)
from backend.auth.deletion import AccountDeletion
from backend.auth.email_tokens import EmailTokens
from backend.auth.models import User
from backend.auth.revoking import Revoker
from backend.auth.schemas import (
    DeleteMe,
    SignUp,
    TokenResponse,
    UpdateMe,
)
from backend.auth.sign_ins import SignIns
from backend.identity import ClientInfo, Principal
from backend.mail.compose import MailKind
from backend.mail.locales import normalize_locale


class Accounts:
    """Sign-up, my account, changing and deleting it."""

    def __init__(
        self,
        core: AuthCore,
        sign_ins: SignIns,
        revoker: Revoker,
        email_tokens: EmailTokens,
        deletion: AccountDeletion,
    ) -> None:
        self.core = core
        self.sign_ins = sign_ins
        self.revoker = revoker
        self.email_tokens = email_tokens
        self.deletion = deletion

    @classmethod
    def over(cls, core: AuthCore) -> Accounts:
        """The service over ``core``, with its collaborators made over it too."""
        revoker = Revoker(core)
        return cls(core, SignIns(core), revoker, EmailTokens(core), AccountDeletion(core, revoker))

    async def me(self, principal: Principal) -> User:
        """The caller's account (401 when it no longer exists)."""
        return await self.core.get_user(principal)

    async def _new_user(self, data: SignUp) -> User | None:
        """The account the sign-up makes; None if its address has one (nothing is kept)."""
        password_hash = await asyncio.to_thread(self.core.passwords.hash, data.password)
        name = None if data.name is None else data.name.strip()
        locale = None if data.locale is None else normalize_locale(data.locale)
        user = User(email=data.email.strip(), name=name, password_hash=password_hash, locale=locale)
        try:
            async with self.core.db.begin_nested():  # a taken address undoes this insert alone
                self.core.db.add(user)
        except IntegrityError:
            return None
        return user

    async def sign_up(self, data: SignUp, client: ClientInfo) -> TokenResponse:
        user = await self._new_user(data)
        if user is None:
            raise email_taken("email")
        response = await self.sign_ins.open_session(user, None, client, sign_in=False)
        await self.email_tokens.send(user, VERIFY_EMAIL)
        return response

    async def sign_up_by_mail(self, data: SignUp) -> None:
        """A sign-up while verification is required, done after the answer (the same for every
        address, so it tells nobody which have accounts): a new address gets its account and
        a verification mail; one that has an account gets a mail saying so, to its owner."""
        existing = await self.core.users.get_by_email(data.email.strip())
        if existing is not None:
            self.core.mail_user(existing, MailKind.ACCOUNT_EXISTS)
            return
        user = await self._new_user(data)
        if user is None:  # the same address signed up at the same moment: one is enough
            return
        await self.email_tokens.send(user, VERIFY_EMAIL)

    async def update_me(self, principal: Principal, data: UpdateMe) -> User:
        user = await self.core.get_user(principal)
        if data.name is not None:
            user.name = data.name.strip()
        if data.locale is not None:
            user.locale = normalize_locale(data.locale)
        if data.new_password is not None:
            await self.core.check_password(
                user,
                data.current_password,
                "Changing the password needs the current password",
                field="current_password",
            )
            user.password_hash = await asyncio.to_thread(
                self.core.passwords.hash, data.new_password
            )
            await self.revoker.revoke_sessions_of(user.id, keep=principal.session_id)
            await self.revoker.end_mailed_tokens(user.id)
        await self.core.db.flush()
        return user

    async def delete_me(self, principal: Principal, data: DeleteMe) -> None:
        """Delete the caller's account, once its password is confirmed (see ``AccountDeletion``); an
        anonymous account that has none needs none."""
        user = await self.core.get_user(principal)
        if not (user.is_anonymous and user.password_hash is None):
            await self.core.check_password(
                user, data.password, "Deleting the account needs its password"
            )
        await self.deletion.delete(user)
