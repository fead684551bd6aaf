"""Authenticator-app codes (RFC 6238 TOTP through pyotp) and the sealing of their secrets.

A secret is stored sealed (Fernet, with a key derived from SECRET_KEY), so a database dump
alone does not give anyone a user's second factor; changing SECRET_KEY makes every enrolled
secret unreadable (users enroll again, an admin can turn their TOTP off).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

import pyotp
from cryptography.fernet import Fernet, InvalidToken

_LABEL = b"litebase totp secret v1"
STEP_SECONDS = 30


def _fernet(secret_key: str) -> Fernet:
    key = hmac.new(secret_key.encode(), _LABEL, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def new_secret() -> str:
    return pyotp.random_base32()


def seal(secret_key: str, secret: str) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def unseal(secret_key: str, sealed: str) -> str | None:
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        return None


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, now: datetime, *, window: int = 1) -> int | None:
    """The time step ``code`` is valid for at ``now`` (± ``window`` steps of clock drift)."""
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None
