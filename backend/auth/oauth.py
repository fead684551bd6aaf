"""Talking to sign-in providers (backend/auth/oauth_providers.py says which): OpenID discovery
(cached), and the two calls of the authorization-code flow with PKCE — where to send the browser,
and what the code it comes back with says about the person. Authlib speaks OAuth 2.0; joserfc
checks the ID token (signature against the provider's keys, issuer, audience, expiry, nonce).
Nothing here touches the database: backend/auth/identities.py decides what a provider's answer
means for accounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet

from backend.auth.oauth_providers import Provider, configured_providers
from backend.config import Settings
from backend.errors import NotFound, UpstreamFailed

log = logging.getLogger(__name__)

# Only asymmetric signatures: a provider's keys are public, the client secret is not a key.
_ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
_ID_TOKEN_LEEWAY_SECONDS = 120
_APPLE_SECRET_SECONDS = 3600


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Who the provider says signed in: its stable id for them, and the email it gives."""

    subject: str
    email: str | None = None
    email_verified: bool = False
    name: str | None = None


class ProviderRefused(Exception):
    """The provider's answer cannot be used: ``code`` is what the app is told (``error``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _Discovered(msgspec.Struct):
    metadata: dict[str, Any]
    keys: dict[str, Any] | None
    fetched_at: float


class SignInProviders:
    """The configured providers and the calls to them; one per app (its discovery cache and
    HTTP connections are shared by every request)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.providers = configured_providers(settings)
        self._timeout = settings.oauth_timeout_seconds
        self._http = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._discovered: dict[str, _Discovered] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def get(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"No sign-in provider {name!r} is configured", code="no_such_provider")
        return provider

    # --- the browser leaves for the provider --------------------------------------------------

    async def authorization_url(
        self, provider: Provider, *, redirect_uri: str, state: str, nonce: str, verifier: str
    ) -> str:
        """The provider's page to send the browser to, with PKCE (S256), state and nonce."""
        endpoint = provider.client.authorize_url or provider.preset.authorize_url
        if not endpoint:
            endpoint = (await self._metadata(provider))["authorization_endpoint"]
        extra: dict[str, str] = dict(provider.preset.authorize_params)
        if provider.kind == "oidc":
            extra["nonce"] = nonce
        async with self._oauth_client(provider, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, code_verifier=verifier, **extra
            )
        return str(url)

    # --- the browser is back with a code ------------------------------------------------------

    async def profile(
        self, provider: Provider, *, redirect_uri: str, code: str, verifier: str, nonce: str
    ) -> Profile:
        """Exchange the provider's code (with the PKCE verifier) and read who signed in;
        ProviderRefused when the answer cannot be trusted or used."""
        try:
            return await self._profile(provider, redirect_uri, code, verifier, nonce)
        except UpstreamFailed as exc:
            raise ProviderRefused("provider_unavailable", exc.detail) from exc

    async def _profile(
        self, provider: Provider, redirect_uri: str, code: str, verifier: str, nonce: str
    ) -> Profile:
        token = await self._exchange(provider, redirect_uri, code, verifier)
        access_token = str(token.get("access_token") or "")
        if provider.kind == "github":
            return await self._github_profile(provider, access_token)
        if provider.kind == "discord":
            return await self._discord_profile(provider, access_token)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderRefused("invalid_id_token", "The provider sent no ID token")
        claims = await self._id_token_claims(provider, id_token, nonce)
        if not claims.get("email") and self._userinfo_url(provider, claims):
            info = await self._get_json(self._userinfo_url(provider, claims), access_token)
            if isinstance(info, dict) and info.get("sub") == claims["sub"]:
                verified = provider.preset.verified_claim
                claims = {**claims, "email": info.get("email"), verified: info.get(verified)}
        email = claims.get("email")
        return Profile(
            subject=str(claims["sub"]),
            email=str(email).strip() if email else None,
            email_verified=_is_true(claims.get(provider.preset.verified_claim)),
            name=str(claims["name"]) if claims.get("name") else None,
        )

    async def _exchange(
        self, provider: Provider, redirect_uri: str, code: str, verifier: str
    ) -> dict[str, Any]:
        endpoint = provider.client.token_url or provider.preset.token_url
        if not endpoint:
            endpoint = (await self._metadata(provider))["token_endpoint"]
        async with self._oauth_client(provider, redirect_uri) as client:
            try:
                token: dict[str, Any] = dict(
                    await client.fetch_token(endpoint, code=code, code_verifier=verifier)
                )
            except AuthlibBaseError as exc:  # the provider's error answer (invalid_grant, …)
                raise ProviderRefused(
                    "provider_refused", f"The provider refused the code: {exc.error}"
                ) from exc
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderRefused(
                    "provider_unavailable", f"The provider's token endpoint failed: {exc}"
                ) from exc
        if "error" in token:  # some providers answer 200 with an error (GitHub)
            raise ProviderRefused("provider_refused", f"The provider refused: {token['error']}")
        return token

    async def _id_token_claims(
        self, provider: Provider, id_token: str, nonce: str
    ) -> dict[str, Any]:
        metadata = await self._metadata(provider)
        allowed = [
            alg
            for alg in metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
            if alg in _ID_TOKEN_ALGORITHMS
        ]
        try:
            try:
                token = jwt.decode(id_token, await self._keys(provider), algorithms=allowed)
            except InvalidKeyIdError:  # the provider rotated its keys: fetch them again
                token = jwt.decode(
                    id_token, await self._keys(provider, fresh=True), algorithms=allowed
                )
            claims = token.claims
            issuer = str(metadata.get("issuer", provider.issuer))
            if provider.preset.multi_tenant:
                issuer = issuer.replace("{tenantid}", str(claims.get("tid", "")))
            jwt.JWTClaimsRegistry(
                leeway=_ID_TOKEN_LEEWAY_SECONDS,
                iss={"essential": True, "value": issuer},
                aud={"essential": True, "value": provider.client.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except JoseError as exc:
            log.warning("an ID token from %s was refused: %s", provider.name, exc)
            raise ProviderRefused(
                "invalid_id_token", f"The provider's ID token is not valid: {exc}"
            ) from exc
        azp = claims.get("azp")
        if (
            isinstance(claims.get("aud"), list)
            and len(claims["aud"]) > 1
            and azp != provider.client.client_id
        ):
            raise ProviderRefused("invalid_id_token", "The ID token was issued to another client")
        return dict(claims)

    def _userinfo_url(self, provider: Provider, claims: Mapping[str, Any]) -> str:
        cached = self._discovered.get(provider.issuer)
        from_metadata = cached.metadata.get("userinfo_endpoint", "") if cached else ""
        return provider.client.userinfo_url or provider.preset.userinfo_url or str(from_metadata)

    async def _github_profile(self, provider: Provider, access_token: str) -> Profile:
        """GitHub is OAuth 2.0 without OpenID: the user, and their emails with GitHub's word
        on which are verified (the primary one first)."""
        base = provider.client.userinfo_url or provider.preset.userinfo_url
        user = await self._get_json(base, access_token)
        emails = await self._get_json(base.rstrip("/") + "/emails", access_token)
        if not isinstance(user, dict) or "id" not in user or not isinstance(emails, list):
            raise ProviderRefused("provider_unavailable", "GitHub's answer was not understood")
        listed = [e for e in emails if isinstance(e, dict) and e.get("email")]
        verified = [e for e in listed if e.get("verified") is True]
        # The verified primary, else another verified one, else the primary (unverified).
        chosen = (
            next((e for e in verified if e.get("primary")), None)
            or next(iter(verified), None)
            or next((e for e in listed if e.get("primary")), None)
            or {"email": user.get("email"), "verified": False}
        )
        return Profile(
            subject=str(user["id"]),
            email=str(chosen["email"]) if chosen.get("email") else None,
            email_verified=chosen.get("verified") is True,
            name=str(user.get("name") or user.get("login") or "") or None,
        )

    async def _discord_profile(self, provider: Provider, access_token: str) -> Profile:
        user = await self._get_json(
            provider.client.userinfo_url or provider.preset.userinfo_url, access_token
        )
        if not isinstance(user, dict) or "id" not in user:
            raise ProviderRefused("provider_unavailable", "Discord's answer was not understood")
        return Profile(
            subject=str(user["id"]),
            email=str(user["email"]) if user.get("email") else None,
            email_verified=user.get("verified") is True,
            name=str(user.get("global_name") or user.get("username") or "") or None,
        )

    # --- talking to providers -----------------------------------------------------------------

    def _oauth_client(self, provider: Provider, redirect_uri: str) -> AsyncOAuth2Client:
        secret = provider.client.client_secret or self._apple_secret(provider)
        return AsyncOAuth2Client(
            client_id=provider.client.client_id,
            client_secret=secret or None,
            scope=" ".join(provider.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=provider.preset.token_auth if secret else "none",
            timeout=self._timeout,
        )

    def _apple_secret(self, provider: Provider) -> str:
        """Apple's client secret is a short-lived JWT signed with the app's key (ES256)."""
        client = provider.client
        if not client.private_key:
            return ""
        now = int(time.time())
        return jwt.encode(
            {"alg": "ES256", "kid": client.key_id},
            {
                "iss": client.team_id,
                "iat": now,
                "exp": now + _APPLE_SECRET_SECONDS,
                "aud": "https://appleid.apple.com",
                "sub": client.client_id,
            },
            ECKey.import_key(client.private_key),
        )

    async def _get_json(self, url: str, access_token: str) -> Any:
        try:
            response = await self._http.get(
                url,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderRefused(
                "provider_unavailable", f"The provider did not answer as expected: {exc}"
            ) from exc

    async def _discovery(self, provider: Provider) -> _Discovered:
        """The provider's OpenID configuration, kept OAUTH_DISCOVERY_CACHE_SECONDS."""
        cached = self._discovered.get(provider.issuer)
        max_age = self.settings.oauth_discovery_cache_seconds
        if cached is not None and time.monotonic() - cached.fetched_at < max_age:
            return cached
        url = f"{provider.issuer}/.well-known/openid-configuration"
        try:
            response = await self._http.get(url)
            response.raise_for_status()
            metadata = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamFailed(
                f"The sign-in provider {provider.name!r} did not answer its OpenID"
                f" configuration ({url})",
                code="provider_unavailable",
            ) from exc
        if not isinstance(metadata, dict) or not all(
            isinstance(metadata.get(k), str)
            for k in ("issuer", "authorization_endpoint", "jwks_uri")
        ):
            raise UpstreamFailed(
                f"The OpenID configuration of {provider.name!r} lacks issuer, endpoints or keys",
                code="provider_unavailable",
            )
        if not provider.preset.multi_tenant and metadata["issuer"].rstrip("/") != provider.issuer:
            raise UpstreamFailed(
                f"The OpenID configuration at {url} names another issuer"
                f" ({metadata['issuer']!r}); OpenID discovery requires the same",
                code="provider_unavailable",
            )
        found = _Discovered(metadata, None, time.monotonic())
        self._discovered[provider.issuer] = found
        return found

    async def _metadata(self, provider: Provider) -> dict[str, Any]:
        return (await self._discovery(provider)).metadata

    async def _keys(self, provider: Provider, *, fresh: bool = False) -> KeySet:
        found = await self._discovery(provider)
        if found.keys is None or fresh:
            try:
                response = await self._http.get(found.metadata["jwks_uri"])
                response.raise_for_status()
                found.keys = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderRefused(
                    "provider_unavailable", f"The provider's keys could not be read: {exc}"
                ) from exc
        assert found.keys is not None
        return KeySet.import_key_set(found.keys)  # type: ignore[arg-type]


def _is_true(value: object) -> bool:
    """Providers say true as a boolean, or (Apple) as the string "true"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")
