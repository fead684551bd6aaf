"""A software passkey authenticator for tests: what a browser and a platform authenticator
together hand a relying party, made with ``cryptography`` (ES256 keys, "none" attestation).

``create(options)`` answers registration options as ``navigator.credentials.create()`` would
(``PublicKeyCredential.toJSON()``); ``get(options)`` answers sign-in options as
``navigator.credentials.get()`` would. The origin, the counter and the flags are the test's to
set, so it can also play a page on another site, a cloned authenticator or one that skips
verifying its user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import encode_cbor

UP, UV, AT = 0x01, 0x04, 0x40  # user present, user verified, attested credential data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    """One passkey the authenticator holds: its id, private key, user handle and counter."""

    id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


@dataclass
class SoftAuthenticator:
    origin: str = "http://localhost:8000"
    counting: bool = True  # a synced passkey reports 0 every time; a security key counts up
    verifies_user: bool = True
    credentials: list[Credential] = field(default_factory=list)

    def create(self, options: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """A new credential for ``options`` (the ``publicKey`` of registration options)."""
        rp_id = options["rp"]["id"]
        credential = Credential(
            id=os.urandom(16),
            key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=unb64url(options["user"]["id"]),
        )
        self.credentials.append(credential)
        numbers = credential.key.public_key().public_numbers()
        cose_key = {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32), -3: numbers.y.to_bytes(32)}
        attested = (
            bytes(16)  # AAGUID: none
            + struct.pack(">H", len(credential.id))
            + credential.id
            + encode_cbor(cose_key)
        )
        auth_data = self._authenticator_data(rp_id, AT, credential.sign_count) + attested
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        credential: Credential | None = None,
        origin: str | None = None,
    ) -> dict[str, Any]:
        """An assertion for ``options`` (the ``publicKey`` of sign-in options): by ``credential``,
        else the first one allowed (any for this site when none are listed)."""
        if credential is None:
            allowed = {unb64url(c["id"]) for c in options.get("allowCredentials") or ()}
            credential = next(
                c
                for c in self.credentials
                if c.rp_id == options["rpId"] and (not allowed or c.id in allowed)
            )
        if self.counting:
            credential.sign_count += 1
        auth_data = self._authenticator_data(options["rpId"], 0, credential.sign_count)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = credential.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
        }

    def _authenticator_data(self, rp_id: str, flags: int, sign_count: int) -> bytes:
        flags |= UP | (UV if self.verifies_user else 0)
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", sign_count)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        collected = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**collected, "crossOrigin": False}).encode()
