"""Passkeys (WebAuthn): register one from a signed-in session, sign in with one and nothing
else, use one as the second step of two-factor sign-in; list, rename and remove them.

What a passkey may do is decided here; the ceremony itself (options, challenges, py_webauthn's
checks of the browser's answer) is backend/auth/passkey_ceremony.py, a collaborator.
"""

from __future__ import annotations

from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from webauthn.helpers.structs import AuthenticationCredential

from backend.auth.core import AuthCore, unauthorized
from backend.auth.models import Passkey, User
from backend.auth.passkey_ceremony import MFA, SIGN_IN, Ceremonies, refused
from backend.auth.passkey_schemas import NewPasskey, PasskeyAssertion, PasskeyOptions
from backend.auth.schemas import PasskeyView, TokenResponse
from backend.auth.secrets import hash_token
from backend.auth.sign_ins import SignIns
from backend.auth.standing import address_of, became_permanent, passkey_count, ways_to_sign_in
from backend.errors import Conflict, Forbidden, NotFound, TooMany
from backend.identity import ClientInfo, Principal
from backend.paging import Page, Paging, by_offset, page_by_offset


def passkey_view(passkey: Passkey) -> PasskeyView:
    return msgspec.convert(passkey, PasskeyView, from_attributes=True)


class Passkeys:
    """Register, sign in with, list, rename and remove passkeys."""

    def __init__(self, core: AuthCore, sign_ins: SignIns, ceremonies: Ceremonies) -> None:
        self.core = core
        self.sign_ins = sign_ins
        self.ceremonies = ceremonies

    @classmethod
    def over(cls, core: AuthCore) -> Passkeys:
        """The service over ``core``, with its collaborators made over it too."""
        return cls(core, SignIns(core), Ceremonies(core))

    # --- registering ---------------------------------------------------------------------------

    async def passkey_registration_options(self, principal: Principal) -> PasskeyOptions:
        """Options for ``navigator.credentials.create()``: a discoverable credential that
        verifies its user, not one the account has already."""
        rp_id = self.ceremonies.rp_id()
        self._require_session(principal)
        user = await self.core.get_user(principal)
        mine = await self._passkeys_of(user.id)
        self._check_room(len(mine))
        return await self.ceremonies.registration_options(rp_id, user, mine)

    async def register_passkey(self, principal: Principal, data: NewPasskey) -> PasskeyView:
        """Check the new credential against the challenge this user was given, and keep it."""
        db = self.core.db
        rp_id = self.ceremonies.rp_id()
        self._require_session(principal)
        credential, verified = await self.ceremonies.registration(
            data.credential, principal.user_id, rp_id
        )
        user = await db.get(User, principal.user_id, with_for_update=True)  # the cap holds
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        self._check_room(await passkey_count(db, user.id))
        taken = await db.scalar(
            select(Passkey.id).where(Passkey.credential_id == verified.credential_id)
        )
        if taken is not None:
            raise Conflict("This passkey is registered already", code="passkey_taken")
        passkey = Passkey(
            user_id=user.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=sorted({t.value for t in credential.response.transports or ()}),
            name=(data.name or "Passkey").strip(),
        )
        db.add(passkey)
        became_permanent(user)  # a guest with a passkey has a way back in of its own
        try:
            await db.flush()
        except IntegrityError:  # the same passkey registered at the same moment elsewhere
            raise Conflict("This passkey is registered already", code="passkey_taken") from None
        await db.refresh(passkey)
        return passkey_view(passkey)

    # --- signing in ----------------------------------------------------------------------------

    async def passkey_sign_in_options(self, mfa_token: str | None) -> PasskeyOptions:
        """Options for ``navigator.credentials.get()``. Without ``mfa_token``: any passkey of
        this site, its user verified (it is the only factor). With one: the passkeys of the
        account waiting for its second step."""
        rp_id = self.ceremonies.rp_id()
        if mfa_token is None:
            return await self.ceremonies.sign_in_options(rp_id)
        _, _, user = await self.sign_ins.pending_mfa(mfa_token)
        mine = await self._passkeys_of(user.id)
        if not mine:
            raise Conflict(
                "The account has no passkey: use the authenticator app's code",
                code="no_passkeys",
            )
        step = hash_token(mfa_token)
        return await self.ceremonies.second_step_options(rp_id, user.id, mine, step)

    async def sign_in_with_passkey(
        self, assertion: PasskeyAssertion, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Passwordless: a passkey that verified its user is both factors, so no mfa step."""
        rp_id = self.ceremonies.rp_id()
        credential, challenge, intent = await self.ceremonies.assertion(assertion)
        if intent != {"for": SIGN_IN}:
            raise refused("The passkey answers no sign-in that is open: ask for new options")
        passkey, user = await self._owned_passkey(credential)
        self.ceremonies.verify_assertion(credential, challenge, passkey, rp_id, require_uv=True)
        if user.disabled:
            raise refused("This passkey does not sign in here")
        if self.core.settings.auth_require_verified_email and not user.email_verified:
            raise Forbidden(
                "Verify your email address before signing in", code="email_not_verified"
            )
        return await self.sign_ins.open_session(user, org_id, client)

    async def sign_in_with_passkey_mfa(
        self, mfa_token: str, assertion: PasskeyAssertion, client: ClientInfo
    ) -> TokenResponse:
        """The second step of two-factor sign-in, with a passkey of the same account."""
        rp_id = self.ceremonies.rp_id()
        key, org_id, user = await self.sign_ins.pending_mfa(mfa_token)
        failures_key = await self.sign_ins.count_attempt(address_of(user, "sign in"), client)
        credential, challenge, intent = await self.ceremonies.assertion(assertion)
        wanted = {"for": MFA, "user": str(user.id), "step": hash_token(mfa_token)}
        if intent != wanted:
            raise refused("The passkey answers no sign-in step of this account: ask for options")
        passkey, owner = await self._owned_passkey(credential)
        if owner.id != user.id:
            raise refused("This passkey is not one of this account's")
        self.ceremonies.verify_assertion(credential, challenge, passkey, rp_id, require_uv=False)
        await self.core.redis.delete(key, failures_key)
        return await self.sign_ins.open_session(user, org_id, client)

    async def _owned_passkey(self, credential: AuthenticationCredential) -> tuple[Passkey, User]:
        """The stored passkey the assertion names (row locked: its counter moves one at a
        time) and its user; the user handle, when the authenticator gives one, must be theirs."""
        found = (
            await self.core.db.execute(
                select(Passkey, User)
                .join(User, User.id == Passkey.user_id)
                .where(Passkey.credential_id == credential.raw_id)
                .with_for_update(of=Passkey)
            )
        ).first()
        if found is None:
            raise refused("This passkey is not registered here (it may have been removed)")
        passkey, user = found
        handle = credential.response.user_handle
        if handle and handle != user.id.bytes:  # none (or empty) from some security keys
            raise refused("The passkey's user is not the one it was registered for")
        return passkey, user

    # --- mine ----------------------------------------------------------------------------------

    async def list_passkeys(self, principal: Principal, paging: Paging) -> Page[PasskeyView]:
        passkeys = await self.core.db.scalars(
            by_offset(
                select(Passkey)
                .where(Passkey.user_id == principal.user_id)
                .order_by(Passkey.created_at, Passkey.id),
                paging,
            )
        )
        return page_by_offset(passkeys.all(), paging).map(passkey_view)

    async def rename_passkey(
        self, principal: Principal, passkey_id: UUID, name: str
    ) -> PasskeyView:
        self._require_session(principal)
        passkey = await self._mine(principal, passkey_id)
        passkey.name = name.strip()
        await self.core.db.flush()
        await self.core.db.refresh(passkey)
        return passkey_view(passkey)

    async def remove_passkey(self, principal: Principal, passkey_id: UUID) -> None:
        """Remove one of my passkeys, unless it is the account's last way to sign in."""
        db = self.core.db
        self._require_session(principal)
        user = await db.get(User, principal.user_id, with_for_update=True)  # one at a time
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        passkey = await self._mine(principal, passkey_id)
        if await ways_to_sign_in(db, user) <= 1:
            raise Conflict(
                "This passkey is the account's last way to sign in: set a password, link a"
                " sign-in provider or add another passkey first",
                code="last_sign_in_method",
            )
        await db.delete(passkey)
        await db.flush()

    async def _mine(self, principal: Principal, passkey_id: UUID) -> Passkey:
        passkey = await self.core.db.get(Passkey, passkey_id)
        if passkey is None or passkey.user_id != principal.user_id:
            raise NotFound("No such passkey", code="not_found")
        return passkey

    async def _passkeys_of(self, user_id: UUID) -> list[Passkey]:
        found = await self.core.db.scalars(
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
        )
        return list(found.all())

    @staticmethod
    def _require_session(principal: Principal) -> None:
        """Passkeys sign in as the account: only a signed-in person adds or removes one, never
        an API key (a leaked key must not become a way in)."""
        if principal.api_key_id is not None:
            raise Forbidden(
                "Passkeys are managed from a signed-in session, not with an API key",
                code="session_required",
            )

    def _check_room(self, have: int) -> None:
        if have >= self.core.settings.webauthn_max_passkeys_per_user:
            raise TooMany(
                f"You have {have} passkeys, the most allowed; remove one first",
                code="too_many_passkeys",
            )
