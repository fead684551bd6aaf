"""Secrets Litebase hands out and checks: passwords, opaque tokens, and signed access tokens.

Nothing here touches the database; the service decides what each secret means.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from uuid import UUID

import jwt
import msgspec
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from backend.config import Settings

JWT_ALGORITHM = "HS256"
_CLOCK_SKEW_SECONDS = 30
REFRESH_TOKEN_PREFIX = "lbr_"  # noqa: S105 - a prefix, not a secret
API_KEY_PREFIX = "lb_"


class Passwords:
    """Argon2id at the costs the settings give (PASSWORD_HASH_MEMORY_KIB, _TIME_COST). A hash
    made at other costs still verifies, and ``needs_rehash`` says to hash it again."""

    def __init__(self, memory_kib: int, time_cost: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=Type.ID
        )
        # Verified against when the email is unknown, so both paths cost the same.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Constant-time check; with no hash (unknown user) it still pays for one."""
        try:
            matches = self._hasher.verify(password_hash or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        return matches and password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=8)
def passwords(memory_kib: int, time_cost: int) -> Passwords:
    """The hasher for these costs, made once per process."""
    return Passwords(memory_kib, time_cost)


def passwords_for(settings: Settings) -> Passwords:
    return passwords(settings.password_hash_memory_kib, settings.password_hash_time_cost)


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are 256 random bits: a plain SHA-256 is enough to store them (unlike passwords).

    Tokens are found by their hash through an index, never compared as plaintext, so a
    lookup's timing says nothing about the secret.
    """
    return hashlib.sha256(token.encode()).hexdigest()


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    sub: UUID
    sid: UUID
    role: str
    org: UUID | None
    # Supabase's claim of the same name: a user made by grant_type anonymous. Absent from
    # tokens issued before it existed (false). It can only go stale towards true (an account
    # becomes permanent, never anonymous again), for at most one access token's life.
    is_anonymous: bool = False
    iat: int
    exp: int
    iss: str
    aud: str


class InvalidAccessToken(Exception):
    """The bearer token is not an access token this server issued, or it has expired."""


def issue_access_token(
    *,
    secret_key: str,
    user_id: UUID,
    session_id: UUID,
    role: str,
    org_id: UUID | None,
    now: datetime,
    ttl: timedelta,
    issuer: str,
    audience: str,
    is_anonymous: bool = False,
) -> str:
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "role": role,
        "org": str(org_id) if org_id else None,
        "is_anonymous": is_anonymous,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "iss": issuer,
        "aud": audience,
    }
    return jwt.encode(claims, secret_key, algorithm=JWT_ALGORITHM)


def read_access_token(
    token: str, *, secret_key: str, now: datetime, issuer: str, audience: str
) -> AccessClaims:
    """Verify signature (HS256 only), issuer, audience and expiry against ``now``."""
    claims = _verified_claims(token, secret_key, issuer, audience)
    if claims.exp <= now.timestamp():
        raise InvalidAccessToken("the access token has expired")
    if claims.iat > now.timestamp() + _CLOCK_SKEW_SECONDS:
        raise InvalidAccessToken("the access token is issued in the future")
    return claims


@lru_cache(maxsize=10_000)
def _verified_claims(token: str, secret_key: str, issuer: str, audience: str) -> AccessClaims:
    """Signature, issuer and audience never change for a given token: check them once.

    (Failures are not cached: lru_cache does not keep exceptions.)
    """
    try:
        payload = jwt.decode(
            token,
            secret_key,
            algorithms=[JWT_ALGORITHM],
            audience=audience,
            issuer=issuer,
            # Time claims are checked below against the app's clock, so tests can move time.
            options={
                "require": ["exp", "iat", "sub", "sid", "iss", "aud"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
        return msgspec.convert(payload, AccessClaims)
    except (jwt.PyJWTError, msgspec.ValidationError) as exc:
        raise InvalidAccessToken(str(exc)) from exc
