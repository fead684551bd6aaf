"""Access tokens to callers, without the database where this process or Redis knows the
session: reading a token's claims, and the cache of each session's state (active for whom and
in which org, or revoked) in memory and in Redis."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from redis.asyncio import Redis

from backend.auth.revocations import SessionState, SessionStates
from backend.auth.secrets import API_KEY_PREFIX, AccessClaims, InvalidAccessToken, read_access_token
from backend.config import Settings
from backend.identity import Principal
from backend.lib.clock import Clock

SESSION_STATE_KEY = "litebase:auth:session:{}"
# An active session is cached as b"<user id> <role> <org id or ->" (its SessionOwner).
REVOKED = b"0"


def known_principal(
    bearer: str, settings: Settings, clock: Clock, states: SessionStates
) -> Principal | None:
    """The caller of an access token whose session this process knows to be active, from
    memory alone; None when that takes Redis or the database (an API key, a session not known
    here) or the token is refused (``Sessions.authenticate`` says why)."""
    if bearer.startswith(API_KEY_PREFIX):
        return None
    try:
        claims = access_claims(bearer, settings, clock)
    except InvalidAccessToken:
        return None
    owner = states.get(claims.sid)
    if not owner or owner[0] != claims.sub or owner[2] != claims.org:
        return None
    return principal_of(claims, owner[1])


def access_claims(bearer: str, settings: Settings, clock: Clock) -> AccessClaims:
    return read_access_token(
        bearer,
        secret_key=settings.secret_key,
        now=clock.now(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def principal_of(claims: AccessClaims, role: str) -> Principal:
    """The caller of a checked token; ``role`` is the user's, from the database."""
    return Principal(
        user_id=claims.sub,
        role=role,
        org_id=claims.org,
        session_id=claims.sid,
        is_anonymous=claims.is_anonymous,
        expires_at=claims.exp,
    )


async def forget_session_states(redis: Redis, session_ids: Iterable[UUID]) -> None:
    """Drop the sessions' cached states from Redis (their org changed: a member removed, an
    org deleted); each process drops its own on hearing the ``member`` change."""
    keys = [SESSION_STATE_KEY.format(session_id) for session_id in session_ids]
    if keys:
        await redis.delete(*keys)


def encode_state(state: SessionState) -> bytes:
    return REVOKED if not state else f"{state[0]} {state[1]} {state[2] or '-'}".encode()


def decode_state(raw: bytes | str | None) -> SessionState | None:
    """None when absent or unreadable (an older format): the database decides."""
    text = raw.decode() if isinstance(raw, bytes) else (raw or "")
    if text == REVOKED.decode():
        return False
    try:
        user_id, role, org = text.split(" ")
        return (UUID(user_id), role, None if org == "-" else UUID(org))
    except ValueError:
        return None
