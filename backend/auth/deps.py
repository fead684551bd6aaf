"""Dependencies for handlers: the auth services, one per concern (a handler asks for those it
uses), and who is calling (optional or required).

Admins-only routes say so with a guard (backend/auth/guards.py), not a dependency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.access import known_principal
from backend.auth.accounts import Accounts
from backend.auth.admin import Admin
from backend.auth.anonymous import AnonymousUsers
from backend.auth.core import AuthCore, unauthorized
from backend.auth.identities import Identities
from backend.auth.keys import ApiKeys
from backend.auth.limits import count_request
from backend.auth.mailed import MailedTokens
from backend.auth.oauth_flow import SignInFlows
from backend.auth.passkeys import Passkeys
from backend.auth.scopes import ScopeError, check_request
from backend.auth.sessions import Sessions
from backend.auth.two_factor import TwoFactor
from backend.config import Settings
from backend.db.transactions import owned_session
from backend.identity import ClientInfo, Principal
from backend.problems import Problem

# OpenAPI security requirement for routes that need a bearer token.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
# A dependency that reads the caller in line (``principal_of``) carries this attribute, so the
# OpenAPI document knows its routes ask who is calling (backend/openapi.py).
ASKS_WHO_CALLS = "litebase_asks_who_calls"
_Provider = TypeVar("_Provider", bound=Callable[..., Any])


def asks_who_calls(provider: _Provider) -> _Provider:
    """Mark ``provider`` as one that calls ``principal_of`` itself rather than depending on
    ``principal`` (in line, for speed): its routes take an optional bearer token."""
    setattr(provider, ASKS_WHO_CALLS, True)
    return provider


# Where a request keeps its caller once known, so a guard and the handler's dependencies
# authenticate it once.
_PRINCIPAL = "litebase_principal"


def auth_core_for(db: AsyncSession, state: State, settings: Settings) -> AuthCore:
    """What the auth services share, over ``db``, with the app's clients (also used outside
    DI: ``Sessions.over(auth_core_for(...))``)."""
    return AuthCore(db, state.redis, settings, state.clock, state.mailer, state.session_states)


# The request's core, made once and shared by the services a handler asks for; each service
# makes its collaborators over it (``over``).
def provide_auth_core(db_session: AsyncSession, state: State, settings: Settings) -> AuthCore:
    return auth_core_for(db_session, state, settings)


Service = TypeVar("Service")


def _over_core(make: Callable[[AuthCore], Service]) -> Provide:
    """The dependency that gives a handler one auth service, made over the request's core."""

    def provide(auth_core: AuthCore) -> Service:
        return make(auth_core)

    return Provide(provide, sync_to_thread=False)


async def principal_of(request: Request[Any, Any, Any]) -> Principal | None:
    """The caller, or None when no Authorization header was sent. A bad one is 401.

    Most requests are answered from memory (the verified token, the session known active);
    only the rest open an ORM session of their own, so a handler that needs none gets none.
    Asked again for the same request (a guard, then a dependency), it answers from the first.
    """
    scope_state = request.scope.setdefault("state", {})
    if _PRINCIPAL in scope_state:
        known: Principal | None = scope_state[_PRINCIPAL]
        return known
    header = request.headers.get("authorization")
    if not header:
        await _count(request, None)
        scope_state[_PRINCIPAL] = None
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Send Authorization: Bearer <access token or API key>", "invalid_token")
    state = request.app.state
    settings: Settings = state.settings
    principal = known_principal(token, settings, state.clock, state.session_states)
    if principal is None:
        async with owned_session(state.database) as db:
            sessions = Sessions.over(auth_core_for(db, state, settings))
            principal = await sessions.authenticate(token)
    try:  # an API key's scopes and collection allow-list; sessions pass
        check_request(principal.scopes, principal.collections, request.method, request.url.path)
    except ScopeError as exc:
        raise Problem(403, exc.detail, code=exc.code) from exc
    await _count(request, principal)
    scope_state[_PRINCIPAL] = principal
    return principal


async def _count(request: Request[Any, Any, Any], principal: Principal | None) -> None:
    """Count the request against its caller's limit (once: ``principal_of`` remembers the
    caller it counted, and answers a second asking from that)."""
    state = request.app.state
    ip = request.client.host if request.client else None
    await count_request(state.redis, state.settings, principal, ip)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal | None:
    return await principal_of(request)


async def provide_current(principal: Principal | None) -> Principal:
    if principal is None:
        raise unauthorized(
            "Sign in first: send Authorization: Bearer <access token or API key>",
            "unauthenticated",
        )
    return principal


def provide_sign_in_flows(state: State, settings: Settings) -> SignInFlows:
    return SignInFlows(state.redis, settings, state.sign_in_providers)


def provide_client_info(request: Request[Any, Any, Any]) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


AUTH_DEPENDENCIES: dict[str, Provide] = {
    "auth_core": Provide(provide_auth_core, sync_to_thread=False),
    "session_service": _over_core(Sessions.over),
    "two_factor_service": _over_core(TwoFactor.over),
    "passkey_service": _over_core(Passkeys.over),
    "mailed_token_service": _over_core(MailedTokens.over),
    "api_key_service": _over_core(ApiKeys.over),
    "account_service": _over_core(Accounts.over),
    "anonymous_service": _over_core(AnonymousUsers.over),
    "identity_service": _over_core(Identities.over),
    "admin_service": _over_core(Admin.over),
    "principal": Provide(provide_principal),
    "current": Provide(provide_current),
    "client": Provide(provide_client_info, sync_to_thread=False),
    "sign_in_flows": Provide(provide_sign_in_flows, sync_to_thread=False),
}
