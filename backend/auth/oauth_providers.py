"""Sign-in providers as configured: the presets Litebase knows (Google, Microsoft, Apple, GitLab,
GitHub, Discord), and each provider of the settings (OAUTH_<NAME>_* variables or
OAUTH_PROVIDERS_FILE) with the preset, or plain OpenID discovery, it stands on. Talking to them
is backend/auth/oauth.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec
import yaml

from backend.config import OAuthClient, Settings, SettingsError

Kind = Literal["oidc", "github", "discord"]


@dataclass(frozen=True)
class Preset:
    """What Litebase knows of a well-known provider."""

    display_name: str
    kind: Kind = "oidc"
    issuer: str = ""
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_auth: str = "client_secret_basic"  # noqa: S105 - a method's name, not a secret
    # The claim that says the provider checked the email (Microsoft's is optional, xms_edov).
    verified_claim: str = "email_verified"
    # The discovery document's issuer is a template ({tenantid}) filled from the token's tid.
    multi_tenant: bool = False


PRESETS: dict[str, Preset] = {
    "google": Preset("Google", issuer="https://accounts.google.com"),
    "microsoft": Preset(
        "Microsoft",
        issuer="https://login.microsoftonline.com/common/v2.0",
        verified_claim="xms_edov",
        multi_tenant=True,
    ),
    "apple": Preset(
        "Apple",
        issuer="https://appleid.apple.com",
        scopes=("name", "email"),  # Apple's two; it sends the ID token regardless
        # Apple posts the answer back (a form) when it is asked for the email or name.
        authorize_params={"response_mode": "form_post"},
        token_auth="client_secret_post",  # noqa: S106 - a method, not a secret
    ),
    "gitlab": Preset("GitLab", issuer="https://gitlab.com"),
    "github": Preset(
        "GitHub",
        kind="github",
        authorize_url="https://github.com/login/oauth/authorize",
        token_url="https://github.com/login/oauth/access_token",  # noqa: S106 - a URL, not a secret
        userinfo_url="https://api.github.com/user",
        scopes=("read:user", "user:email"),
        token_auth="client_secret_post",  # noqa: S106 - a method, not a secret
    ),
    "discord": Preset(
        "Discord",
        kind="discord",
        authorize_url="https://discord.com/oauth2/authorize",
        token_url="https://discord.com/api/oauth2/token",  # noqa: S106 - a URL, not a secret
        userinfo_url="https://discord.com/api/users/@me",
        scopes=("identify", "email"),
    ),
}


@dataclass(frozen=True)
class Provider:
    """One configured provider: a preset (or plain OpenID) with this app's registration."""

    name: str
    preset: Preset
    client: OAuthClient

    @property
    def display_name(self) -> str:
        return self.client.display_name or self.preset.display_name

    @property
    def kind(self) -> Kind:
        return self.preset.kind

    @property
    def issuer(self) -> str:
        return (self.client.issuer or self.preset.issuer).rstrip("/")

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.client.scopes or self.preset.scopes


def _provider_of(client: OAuthClient) -> Provider:
    preset_name = client.preset or (client.name if client.name in PRESETS else "")
    if preset_name:
        if preset_name not in PRESETS:
            raise SettingsError(
                f"OAuth provider {client.name!r}: no preset {preset_name!r}"
                f" (one of {', '.join(sorted(PRESETS))})"
            )
        preset = PRESETS[preset_name]
    else:
        if not client.issuer:
            raise SettingsError(
                f"OAuth provider {client.name!r} is no preset: give its issuer"
                f" (OAUTH_{client.name.upper().replace('-', '_')}_ISSUER) for OpenID discovery"
            )
        preset = Preset(client.name.title())
    apple_key = client.team_id and client.key_id and client.private_key
    if preset_name == "apple" and not client.client_secret and not apple_key:
        raise SettingsError(
            "Sign in with Apple needs OAUTH_APPLE_TEAM_ID, OAUTH_APPLE_KEY_ID and"
            " OAUTH_APPLE_PRIVATE_KEY (or a client secret made from them)"
        )
    return Provider(client.name, preset, client)


def clients_from_file(path: str, env: str) -> list[OAuthClient]:
    """The providers of an OAUTH_PROVIDERS_FILE: ``providers: {name: {client_id: …}}``, a
    secret given inline or (better) as ``client_secret_env``, the variable that holds it."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"OAUTH_PROVIDERS_FILE {path!r} cannot be read: {exc}") from exc
    providers = loaded.get("providers") if isinstance(loaded, dict) else None
    if not isinstance(providers, dict):
        raise SettingsError(f"OAUTH_PROVIDERS_FILE {path!r}: expected providers: {{name: …}}")
    clients = []
    for name, entry in providers.items():
        if not isinstance(entry, dict):
            raise SettingsError(f"OAUTH_PROVIDERS_FILE: providers.{name} must be a mapping")
        entry = dict(entry)
        for secret in ("client_secret", "private_key"):
            variable = entry.pop(f"{secret}_env", None)
            if variable:
                entry[secret] = os.environ.get(str(variable), "")
        if isinstance(entry.get("scopes"), str):
            entry["scopes"] = entry["scopes"].replace(",", " ").split()
        try:
            client = msgspec.convert({**entry, "name": str(name)}, OAuthClient, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"OAUTH_PROVIDERS_FILE: providers.{name}: {exc}") from exc
        client.check(env)
        clients.append(client)
    return clients


def configured_providers(settings: Settings) -> dict[str, Provider]:
    """Every provider of the settings: the file's, then the variables' (which win by name)."""
    clients: dict[str, OAuthClient] = {}
    if settings.oauth_providers_file:
        for client in clients_from_file(settings.oauth_providers_file, settings.env):
            clients[client.name] = client
    for client in settings.oauth_clients:
        clients[client.name] = client
    return {name: _provider_of(client) for name, client in clients.items()}
