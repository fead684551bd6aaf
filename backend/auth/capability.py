"""Auth: its routes and dependencies, the per-IP limits' store, mail, the sign-in providers
(OAuth / OpenID), and the process's view of revoked sessions (kept current from Redis while
the app runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from litestar import Litestar
from litestar.stores.redis import RedisStore

from backend.auth.deps import AUTH_DEPENDENCIES
from backend.auth.oauth import SignInProviders
from backend.auth.revocations import SessionStates
from backend.auth.routes import auth_routers
from backend.capability import Basics, Capability
from backend.lib.background import running
from backend.mail.service import Mailer


def auth_capability(basics: Basics) -> Capability:
    session_states = SessionStates(basics.settings.session_cache_seconds)
    # The providers' settings are checked here, so a bad one stops the app at start-up.
    sign_in_providers = SignInProviders(basics.settings)

    @asynccontextmanager
    async def follow_revocations(app: Litestar) -> AsyncIterator[None]:
        async with running(partial(session_states.follow, basics.redis), "revocations"):
            yield

    @asynccontextmanager
    async def close_provider_connections(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sign_in_providers.aclose()

    return Capability(
        "auth",
        routes=auth_routers(basics.settings),
        dependencies=AUTH_DEPENDENCIES,
        lifespans=[follow_revocations, close_provider_connections],
        state={
            "session_states": session_states,
            "mailer": Mailer(basics.celery),
            "sign_in_providers": sign_in_providers,
        },
        stores={"rate_limit": RedisStore(basics.redis, namespace="litebase:ratelimit")},
    )
