"""Webhook secrets and signatures (the header receivers verify; docs/webhooks.md).

``Litebase-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`` where each ``v1`` is
HMAC-SHA256, keyed with the endpoint's secret (its UTF-8 bytes, ``whsec_`` included), over
``<t>.<raw body>``. During a rotation's overlap the old secret signs too, as a second ``v1``.

Secrets are not stored: each is derived from SECRET_KEY and a random salt kept in the
endpoint's row, so a copy of the database alone cannot forge deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_HEADER = "Litebase-Signature"
EVENT_ID_HEADER = "Litebase-Event-Id"
DELIVERY_ID_HEADER = "Litebase-Delivery-Id"
_DERIVATION_LABEL = b"litebase webhook secret v1:"


def new_salt() -> str:
    return secrets.token_urlsafe(24)


def derive_secret(secret_key: str, salt: str) -> str:
    """The endpoint secret for ``salt``: the same for every process that has SECRET_KEY."""
    digest = hmac.new(secret_key.encode(), _DERIVATION_LABEL + salt.encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    """``t=<timestamp>,v1=<sig>`` with one ``v1`` per secret, the current one first."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets_)])
