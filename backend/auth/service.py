"""Auth logic: sign-up and sign-in, rotating refresh tokens, sessions, API keys, email flows.

Refresh tokens rotate on every use. A replay of an already-rotated token within the grace
window (concurrent tabs, a retried request) gets the very same new pair, so nobody is logged
out at random; a replay after it means the token leaked, and the whole session is revoked.
Access tokens name their session (``sid``), checked against a Redis cache of session state, so
logout and revocation take effect at once on every API process.

Each concern has its own module (core, standing, sessions, two_factor, passkeys, mailed, keys,
accounts, anonymous, identities, admin); ``AuthService`` is the one object routes are given, made
of them.
"""

from __future__ import annotations

from backend.auth.access import forget_session_states, known_principal
from backend.auth.accounts import Accounts
from backend.auth.admin import Admin, ensure_admin
from backend.auth.anonymous import AnonymousUsers
from backend.auth.core import unauthorized, user_view
from backend.auth.identities import Identities
from backend.auth.keys import ApiKeys
from backend.auth.mailed import MailedTokens
from backend.auth.passkeys import Passkeys
from backend.auth.sessions import Sessions
from backend.auth.standing import (
    address_of,
    anonymous_refused,
    became_permanent,
    require_permanent,
    require_verified,
)
from backend.auth.two_factor import TwoFactor

__all__ = [
    "AuthService",
    "address_of",
    "anonymous_refused",
    "became_permanent",
    "ensure_admin",
    "forget_session_states",
    "known_principal",
    "require_permanent",
    "require_verified",
    "unauthorized",
    "user_view",
]


class AuthService(
    Sessions,
    TwoFactor,
    Passkeys,
    MailedTokens,
    ApiKeys,
    Accounts,
    AnonymousUsers,
    Identities,
    Admin,
):
    """Every auth operation, over one database session and the app's shared clients."""
