"""API shapes of the passkey ceremony: the browser's WebAuthn JSON
(``PublicKeyCredential.toJSON()``: a new credential, an assertion), the options it is given, a
new passkey and its name. A passkey as listed (``PasskeyView``) stays in schemas.py with the
other views: a listed type's module is part of its page's name in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from backend.lib.names import name_meta


def _base64url(max_length: int) -> msgspec.Meta:
    return msgspec.Meta(
        pattern=r"^[A-Za-z0-9_-]*$", max_length=max_length, description="base64url, unpadded"
    )


# A credential id is at most 1023 bytes (WebAuthn): 1364 characters in base64url.
CredentialId = Annotated[str, _base64url(1364)]
ClientDataJson = Annotated[str, _base64url(4096)]
AttestationObject = Annotated[str, _base64url(32768)]
AuthenticatorData = Annotated[str, _base64url(4096)]
Signature = Annotated[str, _base64url(2048)]
UserHandle = Annotated[str, _base64url(128)]
Attachment = Literal["platform", "cross-platform"]


class AttestationResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The ``response`` of a new credential (the browser's ``toJSON()`` adds more: ignored)."""

    client_data_json: ClientDataJson = msgspec.field(name="clientDataJSON")
    attestation_object: AttestationObject = msgspec.field(name="attestationObject")
    transports: (
        Annotated[list[Annotated[str, msgspec.Meta(max_length=16)]], msgspec.Meta(max_length=8)]
        | None
    ) = None


class PasskeyAttestation(msgspec.Struct, frozen=True, kw_only=True):
    """What ``navigator.credentials.create()`` gives, as JSON (``PublicKeyCredential.toJSON()``)."""

    id: CredentialId
    raw_id: CredentialId = msgspec.field(name="rawId")
    type: Literal["public-key"]
    response: AttestationResponse
    authenticator_attachment: Attachment | None = msgspec.field(
        name="authenticatorAttachment", default=None
    )


class AssertionResponse(msgspec.Struct, frozen=True, kw_only=True):
    client_data_json: ClientDataJson = msgspec.field(name="clientDataJSON")
    authenticator_data: AuthenticatorData = msgspec.field(name="authenticatorData")
    signature: Signature
    user_handle: UserHandle | None = msgspec.field(name="userHandle", default=None)


class PasskeyAssertion(msgspec.Struct, frozen=True, kw_only=True):
    """What ``navigator.credentials.get()`` gives, as JSON (``PublicKeyCredential.toJSON()``)."""

    id: CredentialId
    raw_id: CredentialId = msgspec.field(name="rawId")
    type: Literal["public-key"]
    response: AssertionResponse
    authenticator_attachment: Attachment | None = msgspec.field(
        name="authenticatorAttachment", default=None
    )


class PasskeyOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options for the browser's WebAuthn call, in their JSON form (binary fields base64url):
    ``navigator.credentials.create({publicKey})`` to register, ``.get({publicKey})`` to sign in
    (or ``PublicKeyCredential.parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON``)."""

    public_key: dict[str, Any] = msgspec.field(name="publicKey")


class NewPasskey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    credential: PasskeyAttestation
    name: Annotated[str, name_meta(100)] | None = None


class PasskeyRename(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, name_meta(100)]
