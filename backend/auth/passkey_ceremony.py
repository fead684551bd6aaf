"""The WebAuthn ceremony of passkeys, through py_webauthn: the options the browser is given,
the random challenge they carry (kept in Redis for WEBAUTHN_CHALLENGE_TTL_SECONDS with what it
is for, and taken once), and the checks of what the browser answers. A collaborator of the
passkeys service (backend/auth/passkeys.py), which decides what a checked answer may do.

The answer is looked up by the challenge it signed and the challenge is taken (GETDEL) before
it is checked, so each is used once, right or wrong. py_webauthn checks the rest: the origin,
the relying party, the signature, user presence and verification, and a signature counter that
must not go backwards (a cloned authenticator).
"""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

import msgspec
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
from backend.auth.passkey_schemas import PasskeyAssertion, PasskeyAttestation, PasskeyOptions
from backend.errors import Invalid, Unauthenticated, Unavailable

log = logging.getLogger(__name__)
CHALLENGE_KEY = "litebase:auth:passkey-challenge:{}"
REGISTER, SIGN_IN, MFA = "register", "sign_in", "mfa"
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def refused(detail: str) -> Unauthenticated:
    return unauthorized(detail, "invalid_credentials")


def bad_credential(detail: str) -> Invalid:
    return Invalid(
        detail, errors=[{"field": "credential", "message": "not accepted", "source": "body"}]
    )


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports if t in _TRANSPORTS]
    return PublicKeyCredentialDescriptor(id=passkey.credential_id, transports=transports or None)


class Ceremonies:
    """Options out, answers checked, each challenge used once."""

    def __init__(self, core: AuthCore) -> None:
        self.core = core

    def rp_id(self) -> str:
        """The relying party id; 503 ``passkeys_off`` when passkeys are not set up."""
        rp_id = self.core.settings.passkey_rp_id
        if not rp_id:
            raise Unavailable(
                "Passkeys are off: set WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS to turn them on",
                code="passkeys_off",
            )
        return rp_id

    # --- registering ---------------------------------------------------------------------------

    async def registration_options(
        self, rp_id: str, user: User, mine: list[Passkey]
    ) -> PasskeyOptions:
        """Options for ``navigator.credentials.create()``: a discoverable credential that
        verifies its user, not one of ``mine`` (the account's passkeys)."""
        settings = self.core.settings
        label = user.email or str(user.id)  # what the browser lists the passkey under
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=settings.webauthn_rp_name,
            user_name=label,
            user_id=user.id.bytes,
            user_display_name=user.name or label,
            timeout=settings.webauthn_challenge_ttl_seconds * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(p) for p in mine],
        )
        await self._keep_challenge(options.challenge, REGISTER, user.id)
        return PasskeyOptions(public_key=options_to_json_dict(options))

    async def registration(
        self, attestation: PasskeyAttestation, user_id: UUID, rp_id: str
    ) -> tuple[RegistrationCredential, VerifiedRegistration]:
        """The new credential, checked against the registration challenge ``user_id`` was
        given (422 naming the credential otherwise)."""
        try:
            credential = parse_registration_credential_json(msgspec.to_builtins(attestation))
            client_data = parse_client_data_json(credential.response.client_data_json)
        except (WebAuthnException, ValueError) as exc:
            raise bad_credential(f"The new passkey's answer does not parse: {exc}") from exc
        intent = await self._take_challenge(client_data.challenge)
        if intent != {"for": REGISTER, "user": str(user_id)}:
            raise bad_credential(
                "The passkey answers no registration of yours that is open: ask for new options"
                " (POST /auth/passkeys/register/options) and try again"
            )
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=client_data.challenge,
                expected_rp_id=rp_id,
                expected_origin=self._origins(credential.response.client_data_json),
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise bad_credential(f"The new passkey was not accepted: {exc}") from exc
        return credential, verified

    # --- signing in ----------------------------------------------------------------------------

    async def sign_in_options(self, rp_id: str) -> PasskeyOptions:
        """Options for ``navigator.credentials.get()`` to sign in with any passkey of this
        site, its user verified (it is the only factor)."""
        options = generate_authentication_options(
            rp_id=rp_id,
            timeout=self.core.settings.webauthn_challenge_ttl_seconds * 1000,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        await self._keep_challenge(options.challenge, SIGN_IN)
        return PasskeyOptions(public_key=options_to_json_dict(options))

    async def second_step_options(
        self, rp_id: str, user_id: UUID, mine: list[Passkey], step: str
    ) -> PasskeyOptions:
        """Options for ``navigator.credentials.get()`` with one of ``mine`` (the account's
        passkeys), as the second step ``step`` of its two-factor sign-in."""
        options = generate_authentication_options(
            rp_id=rp_id,
            timeout=self.core.settings.webauthn_challenge_ttl_seconds * 1000,
            allow_credentials=[_descriptor(p) for p in mine],
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        await self._keep_challenge(options.challenge, MFA, user_id, step)
        return PasskeyOptions(public_key=options_to_json_dict(options))

    async def assertion(
        self, assertion: PasskeyAssertion
    ) -> tuple[AuthenticationCredential, bytes, dict[str, str] | None]:
        """The parsed assertion, the challenge it signed and what that challenge was for (None
        when it is unknown, used or expired): taken now, so it never serves twice."""
        try:
            credential = parse_authentication_credential_json(msgspec.to_builtins(assertion))
            challenge = parse_client_data_json(credential.response.client_data_json).challenge
        except (WebAuthnException, ValueError) as exc:
            raise refused(f"The passkey's answer does not parse: {exc}") from exc
        return credential, challenge, await self._take_challenge(challenge)

    def verify_assertion(
        self,
        credential: AuthenticationCredential,
        challenge: bytes,
        passkey: Passkey,
        rp_id: str,
        *,
        require_uv: bool,
    ) -> None:
        """Check the assertion against ``passkey``, and move its counter and last use."""
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
            raise refused(f"The passkey was not accepted: {exc}") from exc
        passkey.sign_count = verified.new_sign_count
        passkey.last_used_at = self.core.clock.now()

    # --- the parts ------------------------------------------------------------------------------

    def _origins(self, client_data_json: bytes) -> list[str]:
        """The origins the page that signed ``client_data_json`` may have (its own origin is
        checked against them by py_webauthn)."""
        seen = parse_client_data_json(client_data_json).origin
        return self.core.settings.passkey_origins(seen) if isinstance(seen, str) else []

    async def _keep_challenge(
        self, challenge: bytes, purpose: str, user_id: UUID | None = None, step: str | None = None
    ) -> None:
        intent = {"for": purpose}
        if user_id is not None:
            intent["user"] = str(user_id)
        if step is not None:
            intent["step"] = step
        await self.core.redis.set(
            CHALLENGE_KEY.format(hashlib.sha256(challenge).hexdigest()),
            msgspec.json.encode(intent),
            ex=self.core.settings.webauthn_challenge_ttl_seconds,
        )

    async def _take_challenge(self, challenge: bytes) -> dict[str, str] | None:
        """What the challenge was issued for, once: None when unknown, used or expired."""
        key = CHALLENGE_KEY.format(hashlib.sha256(challenge).hexdigest())
        raw = await self.core.redis.getdel(key)
        if raw is None:
            return None
        intent: dict[str, str] = msgspec.json.decode(raw)
        return intent
