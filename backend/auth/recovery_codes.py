"""Two-factor recovery codes: made, shown once, and kept only as a keyed hash.

A code is ten characters of a 32-letter alphabet without look-alikes (``0 o 1 l``), 50 random
bits, shown as ``abcde-23456``. What is stored is an HMAC-SHA256 keyed from SECRET_KEY over the
account and the code, so a database dump alone cannot be searched for codes (as TOTP secrets
are sealed with SECRET_KEY), and a code is an account's only. Changing SECRET_KEY makes every
stored code unusable, as it makes TOTP secrets unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID

RECOVERY_CODE_COUNT = 10
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32: no 0 o 1 l
_LENGTH = 10
_LABEL = b"litebase recovery code v1"


def new_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` fresh codes as people read them: ``abcde-23456``."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def code_hash(secret_key: str, user_id: UUID, code: str) -> str:
    """What is stored for ``code`` of the account: any case, with or without the dash."""
    key = hmac.new(secret_key.encode(), _LABEL, hashlib.sha256).digest()
    normalized = code.strip().lower().replace("-", "")
    return hmac.new(key, f"{user_id}:{normalized}".encode(), hashlib.sha256).hexdigest()
