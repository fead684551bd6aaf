"""Sign-in providers' settings, the redirect allow-list and PKCE: no I/O."""

from __future__ import annotations

import logging

import pytest

from backend.auth.oauth_flow import pkce_matches, with_query
from backend.auth.oauth_providers import PRESETS, configured_providers
from backend.config import SettingsError, settings_from_env
from backend.lib.redirects import redirect_allowed, redirect_url_is_valid
from tests.oidc import pkce_pair
from tests.support import PROD_ENV as PROD

ALLOWED = ["https://app.example.com/auth/done", "https://app.example.com/app/*", "myapp://in"]


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/auth/done",
        "https://APP.example.com/app/",
        "https://app.example.com/app/x/y?next=%2Fhome",
        "myapp://in",
    ],
)
def test_the_allow_list_admits(url):
    assert redirect_allowed(url, ALLOWED)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/auth/done?x=1",  # exact means exact
        "https://app.example.com/auth/done/",
        "https://app.example.com/other",
        "https://app.example.com/apple",  # /app/* is not a prefix of the name
        "http://app.example.com/app/x",  # another scheme
        "https://app.example.com:8443/app/x",  # another port
        "https://app.example.com.evil.com/app/x",
        "https://evil.com/app/x",
        "https://app.example.com@evil.com/app/x",
        "https://user:pw@app.example.com/app/x",
        "https://app.example.com/app/../x",
        "https://app.example.com/app/x#frag",
        "https://app.example.com/app/\\evil.com",
        "https://app.example.com/app/x\r\nSet-Cookie: a=b",
        "//evil.com/app/x",
        "javascript:alert(1)",
        "",
    ],
)
def test_the_allow_list_refuses(url):
    assert not redirect_allowed(url, ALLOWED)


def test_nothing_is_allowed_by_an_empty_list():
    assert not redirect_allowed("https://app.example.com/", [])


@pytest.mark.parametrize(
    ("entry", "valid"),
    [
        ("https://app.example.com/*", True),
        ("https://app.example.com/a/b", True),
        ("myapp://in", True),
        ("https://*.example.com/", False),
        ("https://app.example.com/a*", False),
        ("https://app.example.com/*?x=1", False),
        ("app.example.com/*", False),
    ],
)
def test_allow_list_entries_are_checked(entry, valid):
    assert redirect_url_is_valid(entry) is valid


def test_a_bad_allow_list_entry_stops_the_settings():
    with pytest.raises(SettingsError, match="AUTH_REDIRECT_URLS"):
        settings_from_env({"AUTH_REDIRECT_URLS": "https://*.example.com/"})


def test_providers_come_from_variables():
    settings = settings_from_env(
        {
            "OAUTH_PROVIDERS": "google,my-idp,work",
            "OAUTH_GOOGLE_CLIENT_ID": "g-id",
            "OAUTH_GOOGLE_CLIENT_SECRET": "g-secret",
            "OAUTH_MY_IDP_CLIENT_ID": "m-id",
            "OAUTH_MY_IDP_ISSUER": "https://id.example.com/",
            "OAUTH_MY_IDP_SCOPES": "openid,email",
            "OAUTH_WORK_CLIENT_ID": "w-id",
            "OAUTH_WORK_PRESET": "microsoft",
        }
    )
    providers = configured_providers(settings)
    assert providers["google"].preset is PRESETS["google"]
    assert providers["google"].client.client_secret == "g-secret"
    assert providers["my-idp"].issuer == "https://id.example.com"
    assert providers["my-idp"].scopes == ("openid", "email")
    assert providers["work"].preset is PRESETS["microsoft"]
    assert providers["work"].display_name == "Microsoft"


def test_the_file_gives_providers_and_the_variables_win(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_SECRET_FOR_TEST", "from-env")
    path = tmp_path / "oauth.yaml"
    path.write_text(
        "providers:\n"
        "  github: {client_id: file-gh, client_secret_env: GITHUB_SECRET_FOR_TEST}\n"
        "  gitlab: {client_id: file-gl, client_secret: inline, scopes: openid email}\n"
    )
    settings = settings_from_env(
        {
            "OAUTH_PROVIDERS_FILE": str(path),
            "OAUTH_PROVIDERS": "gitlab",
            "OAUTH_GITLAB_CLIENT_ID": "env-gl",
        }
    )
    providers = configured_providers(settings)
    assert providers["github"].client.client_secret == "from-env"
    assert providers["gitlab"].client.client_id == "env-gl"


def test_a_provider_without_an_issuer_or_preset_is_refused():
    settings = settings_from_env({"OAUTH_PROVIDERS": "mine", "OAUTH_MINE_CLIENT_ID": "x"})
    with pytest.raises(SettingsError, match="OAUTH_MINE_ISSUER"):
        configured_providers(settings)


def test_prod_refuses_a_provider_without_a_secret():
    base = {
        **PROD,
        "OAUTH_PROVIDERS": "google",
        "OAUTH_GOOGLE_CLIENT_ID": "g-id",
    }
    with pytest.raises(SettingsError, match="OAUTH_GOOGLE_CLIENT_SECRET"):
        settings_from_env(base)
    with pytest.raises(SettingsError, match="OAUTH_GOOGLE_CLIENT_SECRET"):
        settings_from_env({**base, "OAUTH_GOOGLE_CLIENT_SECRET": "change-me"})
    assert settings_from_env({**base, "OAUTH_GOOGLE_CLIENT_SECRET": "real"}).oauth_clients
    # In dev and test a provider without a secret is fine (a local mock takes any).
    assert settings_from_env({**base, "LITEBASE_ENV": "test"}).oauth_clients


def test_a_client_secret_is_never_shown(caplog):
    settings = settings_from_env(
        {
            "OAUTH_PROVIDERS": "google",
            "OAUTH_GOOGLE_CLIENT_ID": "g-id",
            "OAUTH_GOOGLE_CLIENT_SECRET": "hunter2-secret",
        }
    )
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s %r", settings, settings.oauth_clients)
    shown = repr(settings) + str(settings.oauth_clients[0]) + caplog.text
    assert "hunter2-secret" not in shown
    assert "g-id" in shown


def test_pkce_s256():
    verifier, challenge = pkce_pair()
    assert pkce_matches(challenge, verifier)
    assert not pkce_matches(challenge, verifier + "x")
    assert not pkce_matches(challenge, "é" * 43)


def test_the_apps_query_is_kept_on_the_way_back():
    assert with_query("https://a.example/cb?next=%2Fx", code="c1") == (
        "https://a.example/cb?next=%2Fx&code=c1"
    )


def test_apple_signs_its_client_secret_with_the_apps_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc import jwt
    from joserfc.jwk import ECKey

    from backend.auth.oauth import SignInProviders

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    settings = settings_from_env(
        {
            "OAUTH_PROVIDERS": "apple",
            "OAUTH_APPLE_CLIENT_ID": "com.example.web",
            "OAUTH_APPLE_TEAM_ID": "TEAM123456",
            "OAUTH_APPLE_KEY_ID": "KEY1234567",
            "OAUTH_APPLE_PRIVATE_KEY": pem,
        }
    )
    assert "BEGIN PRIVATE KEY" not in repr(settings)
    providers = SignInProviders(settings)
    secret = providers._apple_secret(providers.get("apple"))
    public = ECKey.import_key(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    token = jwt.decode(secret, public, algorithms=["ES256"])
    assert token.header["kid"] == "KEY1234567"
    assert token.claims["iss"] == "TEAM123456"
    assert token.claims["sub"] == "com.example.web"
    assert token.claims["aud"] == "https://appleid.apple.com"


def test_apple_without_a_secret_or_a_key_is_refused():
    settings = settings_from_env({"OAUTH_PROVIDERS": "apple", "OAUTH_APPLE_CLIENT_ID": "x"})
    with pytest.raises(SettingsError, match="OAUTH_APPLE_TEAM_ID"):
        configured_providers(settings)
