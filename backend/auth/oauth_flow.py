"""The browser's trip through a sign-in provider, kept in Redis: the state of each trip
(single use, OAUTH_STATE_TTL_SECONDS), and the one-time code the app gets back
(single use, stored hashed, OAUTH_CODE_TTL_SECONDS), which the app exchanges at
``POST /auth/token`` with its PKCE verifier (grant_type oauth_code).

The app's PKCE pair binds the trip to the browser that started it: whoever gets hold of the
callback URL or of the code (a leaked log, another tab, a forged callback) cannot exchange
it without the verifier, which never left the app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from urllib.parse import urlencode, urlsplit, urlunsplit
from uuid import UUID

import msgspec
from redis.asyncio import Redis

from backend.auth.oauth import Profile, ProviderRefused, SignInProviders
from backend.auth.secrets import hash_token, new_token
from backend.config import Settings
from backend.errors import Forbidden, Rejected
from backend.identity import Principal
from backend.lib.redirects import redirect_allowed

log = logging.getLogger(__name__)

STATE_KEY = "litebase:oauth:state:{}"
CODE_KEY = "litebase:oauth:code:{}"
CODE_PREFIX = "lbo_"
# What the app is told (?error=…) when the provider's answer cannot be used; the details go
# to the log, never into a URL.
_TOLD = {
    "access_denied": "The sign-in was cancelled at the provider",
    "provider_refused": "The provider refused the sign-in",
    "provider_unavailable": "The provider could not be reached or did not answer as expected",
    "invalid_id_token": "The provider's answer could not be verified",
}


class FlowState(msgspec.Struct, frozen=True, kw_only=True):
    """One trip to a provider: where it comes back to, the app's PKCE challenge, the provider's
    PKCE verifier and nonce, and for a link the session that asked."""

    provider: str
    redirect_to: str
    code_challenge: str
    nonce: str
    verifier: str
    link_user: UUID | None = None
    link_session: UUID | None = None


class OAuthGrant(msgspec.Struct, frozen=True, kw_only=True):
    """What a one-time code stands for: who the provider says signed in, and for what."""

    provider: str
    profile: Profile
    code_challenge: str
    link_user: UUID | None = None
    link_session: UUID | None = None


def pkce_matches(challenge: str, verifier: str) -> bool:
    """RFC 7636 S256: the challenge is base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(expected, challenge)


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def take_grant(redis: Redis, code: str) -> OAuthGrant | None:
    """The grant of a one-time code, which is gone from then on (used or not); None if it is
    unknown, used or expired."""
    raw = await redis.getdel(CODE_KEY.format(hash_token(code)))
    return None if raw is None else msgspec.json.decode(raw, type=OAuthGrant)


class SignInFlows:
    """Start a trip to a provider, and finish it when the browser comes back."""

    def __init__(self, redis: Redis, settings: Settings, providers: SignInProviders) -> None:
        self.redis = redis
        self.settings = settings
        self.providers = providers

    def callback_url(self, provider: str) -> str:
        return f"{self.settings.public_url.rstrip('/')}/auth/oauth/{provider}/callback"

    async def start(
        self,
        provider_name: str,
        redirect_to: str,
        code_challenge: str,
        *,
        source: str = "query",
        link: Principal | None = None,
    ) -> str:
        """The provider's URL to send the browser to; its state is kept until it comes back.
        ``link``: the trip adds the provider's account to the caller's instead of signing in."""
        provider = self.providers.get(provider_name)
        if not redirect_allowed(redirect_to, self.settings.auth_redirect_urls):
            raise Rejected(
                "redirect_to is not in AUTH_REDIRECT_URLS: the browser may only be sent back"
                " to the app's own addresses",
                code="redirect_not_allowed",
                errors=[{"field": "redirect_to", "message": "not allowed", "source": source}],
            )
        if link is not None and link.session_id is None:
            raise Forbidden(
                "Linking a sign-in provider needs a signed-in session, not an API key",
                code="session_required",
            )
        state, nonce = new_token(), new_token()
        verifier = secrets.token_urlsafe(48)
        flow = FlowState(
            provider=provider.name,
            redirect_to=redirect_to,
            code_challenge=code_challenge,
            nonce=nonce,
            verifier=verifier,
            link_user=link.user_id if link else None,
            link_session=link.session_id if link else None,
        )
        url = await self.providers.authorization_url(
            provider,
            redirect_uri=self.callback_url(provider.name),
            state=state,
            nonce=nonce,
            verifier=verifier,
        )
        await self.redis.set(
            STATE_KEY.format(hash_token(state)),
            msgspec.json.encode(flow),
            ex=self.settings.oauth_state_ttl_seconds,
        )
        return url

    async def finish(
        self, provider_name: str, code: str | None, state: str | None, error: str | None
    ) -> str:
        """Where to send the browser back to: the app's redirect_to with ``?code=`` (one-time,
        for POST /auth/token), or with ``?error=`` when the provider said no or its answer
        cannot be used. A state that was never issued, is used or expired, or belongs to
        another provider is refused (400): there is no trusted place to send the browser."""
        raw = await self.redis.getdel(STATE_KEY.format(hash_token(state))) if state else None
        flow = None if raw is None else msgspec.json.decode(raw, type=FlowState)
        if flow is None or flow.provider != provider_name:
            raise Rejected(
                "The sign-in state is not valid, already used or expired: start the sign-in"
                " again from the app",
                code="invalid_state",
                errors=[{"field": "state", "message": "invalid or expired", "source": "query"}],
            )
        if error or not code:
            told = error if error == "access_denied" else "provider_refused"
            return with_query(flow.redirect_to, error=told, error_description=_TOLD[told])
        provider = self.providers.get(provider_name)
        try:
            profile = await self.providers.profile(
                provider,
                redirect_uri=self.callback_url(provider.name),
                code=code,
                verifier=flow.verifier,
                nonce=flow.nonce,
            )
        except ProviderRefused as exc:
            log.warning("sign-in with %s failed: %s", provider.name, exc.detail)
            return with_query(flow.redirect_to, error=exc.code, error_description=_TOLD[exc.code])
        one_time = new_token(CODE_PREFIX)
        grant = OAuthGrant(
            provider=provider.name,
            profile=profile,
            code_challenge=flow.code_challenge,
            link_user=flow.link_user,
            link_session=flow.link_session,
        )
        await self.redis.set(
            CODE_KEY.format(hash_token(one_time)),
            msgspec.json.encode(grant),
            ex=self.settings.oauth_code_ttl_seconds,
        )
        return with_query(flow.redirect_to, code=one_time)
