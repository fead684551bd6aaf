"""Passkeys (WebAuthn, through py_webauthn): register one from a signed-in session, sign in
with one and nothing else, use one as the second step of two-factor sign-in; list, rename and
remove them.

Every ceremony starts with options carrying a random challenge, kept in Redis for
WEBAUTHN_CHALLENGE_TTL_SECONDS with what it is for (registering for this user, signing in, the
second step of that sign-in). The browser signs over the challenge; the answer is looked up by
it and taken (GETDEL) before it is checked, so each challenge is used once, right or wrong.
py_webauthn checks the rest: the origin, the relying party, the signature, user presence and
verification, and a signature counter that must not go backwards (a cloned authenticator).
"""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from backend.auth.core import AuthCore, unauthorized
from backend.auth.models import Passkey, User
from backend.auth.schemas import (
    NewPasskey,
    PasskeyAssertion,
    PasskeyOptions,
    PasskeyView,
    TokenResponse,
)
from backend.auth.secrets import hash_token
from backend.auth.standing import address_of, became_permanent, passkey_count, ways_to_sign_in
from backend.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    TooMany,
    Unauthenticated,
    Unavailable,
)
from backend.identity import ClientInfo, Principal
from backend.paging import Page, Paging, by_offset, page_by_offset

log = logging.getLogger(__name__)
CHALLENGE_KEY = "litebase:auth:passkey-challenge:{}"
REGISTER, SIGN_IN, MFA = "register", "sign_in", "mfa"
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def passkey_view(passkey: Passkey) -> PasskeyView:
    return msgspec.convert(passkey, PasskeyView, from_attributes=True)


def _refused(detail: str) -> Unauthenticated:
    return unauthorized(detail, "invalid_credentials")


def _bad_credential(detail: str) -> Invalid:
    return Invalid(
        detail, errors=[{"field": "credential", "message": "not accepted", "source": "body"}]
    )


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=passkey.credential_id, transports=transports or None)


class Passkeys(AuthCore):
    """Register, sign in with, list, rename and remove passkeys."""

    # --- registering ---------------------------------------------------------------------------

    async def passkey_registration_options(self, principal: Principal) -> PasskeyOptions:
        """Options for ``navigator.credentials.create()``: a discoverable credential that
        verifies its user, not one the account has already."""
        rp_id = self._rp_id()
        self._require_session(principal)
        user = await self.get_user(principal)
        mine = await self._passkeys_of(user.id)
        self._check_room(len(mine))
        label = user.email or str(user.id)  # what the browser lists the passkey under
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=self.settings.webauthn_rp_name,
            user_name=label,
            user_id=user.id.bytes,
            user_display_name=user.name or label,
            timeout=self.settings.webauthn_challenge_ttl_seconds * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(p) for p in mine],
        )
        await self._keep_challenge(options.challenge, REGISTER, user.id)
        return PasskeyOptions(public_key=options_to_json_dict(options))

    async def register_passkey(self, principal: Principal, data: NewPasskey) -> PasskeyView:
        """Check the new credential against the challenge this user was given, and keep it."""
        rp_id = self._rp_id()
        self._require_session(principal)
        try:
            credential = parse_registration_credential_json(msgspec.to_builtins(data.credential))
            client_data = parse_client_data_json(credential.response.client_data_json)
        except (WebAuthnException, ValueError) as exc:
            raise _bad_credential(f"The new passkey's answer does not parse: {exc}") from exc
        intent = await self._take_challenge(client_data.challenge)
        if intent != {"for": REGISTER, "user": str(principal.user_id)}:
            raise _bad_credential(
                "The passkey answers no registration of yours that is open: ask for new options"
                " (POST /auth/passkeys/register/options) and try again"
            )
        verified = self._verified_registration(credential, client_data.challenge, rp_id)
        user = await self.db.get(User, principal.user_id, with_for_update=True)  # the cap holds
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        self._check_room(await passkey_count(self.db, user.id))
        taken = await self.db.scalar(
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
        self.db.add(passkey)
        became_permanent(user)  # a guest with a passkey has a way back in of its own
        try:
            await self.db.flush()
        except IntegrityError:  # the same passkey registered at the same moment elsewhere
            raise Conflict("This passkey is registered already", code="passkey_taken") from None
        await self.db.refresh(passkey)
        return passkey_view(passkey)

    def _verified_registration(
        self, credential: RegistrationCredential, challenge: bytes, rp_id: str
    ) -> VerifiedRegistration:
        try:
            return verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=self._origins(credential.response.client_data_json),
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise _bad_credential(f"The new passkey was not accepted: {exc}") from exc

    # --- signing in ----------------------------------------------------------------------------

    async def passkey_sign_in_options(self, mfa_token: str | None) -> PasskeyOptions:
        """Options for ``navigator.credentials.get()``. Without ``mfa_token``: any passkey of
        this site, its user verified (it is the only factor). With one: the passkeys of the
        account waiting for its second step."""
        rp_id = self._rp_id()
        if mfa_token is None:
            options = generate_authentication_options(
                rp_id=rp_id,
                timeout=self.settings.webauthn_challenge_ttl_seconds * 1000,
                user_verification=UserVerificationRequirement.REQUIRED,
            )
            await self._keep_challenge(options.challenge, SIGN_IN)
        else:
            _, _, user = await self._pending_mfa(mfa_token)
            mine = await self._passkeys_of(user.id)
            if not mine:
                raise Conflict(
                    "The account has no passkey: use the authenticator app's code",
                    code="no_passkeys",
                )
            options = generate_authentication_options(
                rp_id=rp_id,
                timeout=self.settings.webauthn_challenge_ttl_seconds * 1000,
                allow_credentials=[_descriptor(p) for p in mine],
                user_verification=UserVerificationRequirement.PREFERRED,
            )
            await self._keep_challenge(options.challenge, MFA, user.id, hash_token(mfa_token))
        return PasskeyOptions(public_key=options_to_json_dict(options))

    async def sign_in_with_passkey(
        self, assertion: PasskeyAssertion, org_id: UUID | None, client: ClientInfo
    ) -> TokenResponse:
        """Passwordless: a passkey that verified its user is both factors, so no mfa step."""
        rp_id = self._rp_id()
        credential, challenge, intent = await self._assertion(assertion)
        if intent != {"for": SIGN_IN}:
            raise _refused("The passkey answers no sign-in that is open: ask for new options")
        passkey, user = await self._owned_passkey(credential)
        self._verify_assertion(credential, challenge, passkey, rp_id, require_uv=True)
        if user.disabled:
            raise _refused("This passkey does not sign in here")
        if self.settings.auth_require_verified_email and not user.email_verified:
            raise Forbidden(
                "Verify your email address before signing in", code="email_not_verified"
            )
        return await self._open_session(user, org_id, client)

    async def sign_in_with_passkey_mfa(
        self, mfa_token: str, assertion: PasskeyAssertion, client: ClientInfo
    ) -> TokenResponse:
        """The second step of two-factor sign-in, with a passkey of the same account."""
        rp_id = self._rp_id()
        key, org_id, user = await self._pending_mfa(mfa_token)
        failures_key = await self._count_attempt(address_of(user, "sign in"), client)
        credential, challenge, intent = await self._assertion(assertion)
        wanted = {"for": MFA, "user": str(user.id), "step": hash_token(mfa_token)}
        if intent != wanted:
            raise _refused("The passkey answers no sign-in step of this account: ask for options")
        passkey, owner = await self._owned_passkey(credential)
        if owner.id != user.id:
            raise _refused("This passkey is not one of this account's")
        self._verify_assertion(credential, challenge, passkey, rp_id, require_uv=False)
        await self.redis.delete(key, failures_key)
        return await self._open_session(user, org_id, client)

    async def _assertion(
        self, assertion: PasskeyAssertion
    ) -> tuple[AuthenticationCredential, bytes, dict[str, str] | None]:
        """The parsed assertion, the challenge it signed and what that challenge was for (None
        when it is unknown, used or expired): taken now, so it never serves twice."""
        try:
            credential = parse_authentication_credential_json(msgspec.to_builtins(assertion))
            challenge = parse_client_data_json(credential.response.client_data_json).challenge
        except (WebAuthnException, ValueError) as exc:
            raise _refused(f"The passkey's answer does not parse: {exc}") from exc
        return credential, challenge, await self._take_challenge(challenge)

    async def _owned_passkey(self, credential: AuthenticationCredential) -> tuple[Passkey, User]:
        """The stored passkey the assertion names (row locked: its counter moves one at a
        time) and its user; the user handle, when the authenticator gives one, must be theirs."""
        found = (
            await self.db.execute(
                select(Passkey, User)
                .join(User, User.id == Passkey.user_id)
                .where(Passkey.credential_id == credential.raw_id)
                .with_for_update(of=Passkey)
            )
        ).first()
        if found is None:
            raise _refused("This passkey is not registered here (it may have been removed)")
        passkey, user = found
        handle = credential.response.user_handle
        if handle and handle != user.id.bytes:  # none (or empty) from some security keys
            raise _refused("The passkey's user is not the one it was registered for")
        return passkey, user

    def _verify_assertion(
        self,
        credential: AuthenticationCredential,
        challenge: bytes,
        passkey: Passkey,
        rp_id: str,
        *,
        require_uv: bool,
    ) -> None:
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=rp_id,
                expected_origin=self._origins(credential.response.client_data_json),
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=require_uv,
            )
        except WebAuthnException as exc:
            if "sign count" in str(exc):
                log.warning("passkey %s: its signature counter went backwards", passkey.id)
            raise _refused(f"The passkey was not accepted: {exc}") from exc
        passkey.sign_count = verified.new_sign_count
        passkey.last_used_at = self.clock.now()

    # --- mine ----------------------------------------------------------------------------------

    async def list_passkeys(self, principal: Principal, paging: Paging) -> Page[PasskeyView]:
        passkeys = await self.db.scalars(
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
        await self.db.flush()
        await self.db.refresh(passkey)
        return passkey_view(passkey)

    async def remove_passkey(self, principal: Principal, passkey_id: UUID) -> None:
        """Remove one of my passkeys, unless it is the account's last way to sign in."""
        self._require_session(principal)
        user = await self.db.get(User, principal.user_id, with_for_update=True)  # one at a time
        if user is None:
            raise unauthorized("The account no longer exists", "invalid_token")
        passkey = await self._mine(principal, passkey_id)
        if await ways_to_sign_in(self.db, user) <= 1:
            raise Conflict(
                "This passkey is the account's last way to sign in: set a password, link a"
                " sign-in provider or add another passkey first",
                code="last_sign_in_method",
            )
        await self.db.delete(passkey)
        await self.db.flush()

    async def _mine(self, principal: Principal, passkey_id: UUID) -> Passkey:
        passkey = await self.db.get(Passkey, passkey_id)
        if passkey is None or passkey.user_id != principal.user_id:
            raise NotFound("No such passkey", code="not_found")
        return passkey

    async def _passkeys_of(self, user_id: UUID) -> list[Passkey]:
        found = await self.db.scalars(
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
        )
        return list(found.all())

    # --- the parts ------------------------------------------------------------------------------

    def _rp_id(self) -> str:
        rp_id = self.settings.passkey_rp_id
        if not rp_id:
            raise Unavailable(
                "Passkeys are off: set WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS to turn them on",
                code="passkeys_off",
            )
        return rp_id

    def _origins(self, client_data_json: bytes) -> list[str]:
        """The origins the page that signed ``client_data_json`` may have (its own origin is
        checked against them by py_webauthn)."""
        seen = parse_client_data_json(client_data_json).origin
        return self.settings.passkey_origins(seen) if isinstance(seen, str) else []

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
        if have >= self.settings.webauthn_max_passkeys_per_user:
            raise TooMany(
                f"You have {have} passkeys, the most allowed; remove one first",
                code="too_many_passkeys",
            )

    async def _keep_challenge(
        self, challenge: bytes, purpose: str, user_id: UUID | None = None, step: str | None = None
    ) -> None:
        intent = {"for": purpose}
        if user_id is not None:
            intent["user"] = str(user_id)
        if step is not None:
            intent["step"] = step
        await self.redis.set(
            CHALLENGE_KEY.format(hashlib.sha256(challenge).hexdigest()),
            msgspec.json.encode(intent),
            ex=self.settings.webauthn_challenge_ttl_seconds,
        )

    async def _take_challenge(self, challenge: bytes) -> dict[str, str] | None:
        """What the challenge was issued for, once: None when unknown, used or expired."""
        raw = await self.redis.getdel(CHALLENGE_KEY.format(hashlib.sha256(challenge).hexdigest()))
        if raw is None:
            return None
        intent: dict[str, str] = msgspec.json.decode(raw)
        return intent
