"""Sign-in with OAuth / OpenID Connect, end to end through the redirects: a real OpenID
provider on loopback (oidc-provider-mock), a small fake of GitHub, the API in process. The
attacks (forged state, replayed codes, stolen codes, tampered nonces, open redirects,
squatters) are in tests/security/test_oauth_attacks.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec
import pyotp
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.auth.oauth import SignInProviders
from backend.config import OAuthClient, Settings, settings_from_env
from backend.errors import UpstreamFailed
from tests.integration.conftest import PASSWORD, bearer, new_email, registered_passkey
from tests.oidc import (
    APP,
    APP_RETURN,
    FakeGitHub,
    GitHubUser,
    at_provider,
    exchange,
    fake_github,
    oauth_settings,
    oidc_provider,
    path_of,
    person,
    pkce_pair,
    query_of,
    sign_in,
    trip,
)
from tests.soft_authenticator import SoftAuthenticator
from tests.support import answer_json, serving


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider() as url:
        yield url


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with fake_github() as fake:
        yield fake


@pytest.fixture
def settings(database_url, redis_url, issuer, github) -> Settings:
    return oauth_settings(
        database_url,
        redis_url,
        issuer,
        clients=[
            OAuthClient(
                name="github",
                client_id="gh-app",
                client_secret="gh-secret",
                authorize_url=f"{github.base_url}/login/oauth/authorize",
                token_url=f"{github.base_url}/login/oauth/access_token",
                userinfo_url=f"{github.base_url}/user",
            )
        ],
    )


async def test_the_providers_are_listed_to_anyone(client):
    listed = await client.get("/auth/oauth/providers")
    assert listed.status_code == 200
    assert {(p["name"], p["display_name"], p["kind"]) for p in listed.json()} == {
        ("mock", "Mock ID", "oidc"),
        ("github", "GitHub", "github"),
    }


async def test_first_sign_in_makes_a_verified_account_and_the_next_finds_it(client, issuer, sql):
    subject, address = person(issuer)
    first = await sign_in(client, subject)
    assert first["user"]["email"] == address
    assert first["user"]["email_verified"] is True
    assert first["user"]["name"] == "Ada"
    me = await client.get("/auth/me", headers=bearer(first["access_token"]))
    assert me.json()["id"] == first["user"]["id"]
    again = await sign_in(client, subject)
    assert again["user"]["id"] == first["user"]["id"]
    assert again["refresh_token"] != first["refresh_token"]  # a session of its own
    assert sql("SELECT password_hash FROM users WHERE id = %s", first["user"]["id"]) == [(None,)]
    listed = await client.get("/auth/identities", headers=bearer(again["access_token"]))
    assert [(i["provider"], i["email"], i["email_verified"]) for i in listed.json()["items"]] == [
        ("mock", address, True)
    ]


async def test_the_redirect_keeps_the_apps_own_query(client, issuer):
    subject, _ = person(issuer)
    returned, verifier = await trip(client, subject, redirect_to=f"{APP}/app/cb?next=%2Fhome")
    assert returned["next"] == "/home"
    assert (await exchange(client, returned["code"], verifier)).status_code == 200


async def test_a_verified_provider_email_signs_in_to_the_verified_account_that_has_it(
    client, issuer, sign_up, sql
):
    account = await sign_up()
    user_id, address = account["user"]["id"], account["user"]["email"]
    sql("UPDATE users SET email_verified = true WHERE id = %s", user_id)
    subject, _ = person(issuer, email=address.upper())  # the case of an address is no matter
    tokens = await sign_in(client, subject)
    assert tokens["user"]["id"] == user_id
    assert sql("SELECT provider, subject FROM auth_identities WHERE user_id = %s", user_id) == [
        ("mock", subject)
    ]
    # The password still works too.
    signed = await client.post(
        "/auth/token", json={"grant_type": "password", "email": address, "password": PASSWORD}
    )
    assert signed.status_code == 200


async def test_link_from_a_signed_in_session_keeps_the_account(client, issuer, sign_up, sql):
    account = await sign_up()  # unverified: linking from a session needs no email proof
    headers = bearer(account["access_token"])
    subject, _ = person(issuer, verified=False)
    verifier, challenge = pkce_pair()
    started = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=headers,
    )
    assert started.status_code == 200, started.text
    back = at_provider(started.json()["url"], subject)
    returned = await client.get(path_of(back), follow_redirects=False)
    code = query_of(returned.headers["location"])["code"]
    linked = await exchange(client, code, verifier)
    assert linked.status_code == 200, linked.text
    assert linked.json()["user"]["id"] == account["user"]["id"]
    # From now on the provider signs in to that account.
    assert (await sign_in(client, subject))["user"]["id"] == account["user"]["id"]
    identities = (await client.get("/auth/identities", headers=headers)).json()["items"]
    assert [(i["provider"], i["email_verified"]) for i in identities] == [("mock", False)]
    # A password and an identity: the identity may go, then it no longer signs in.
    gone = await client.delete(f"/auth/identities/{identities[0]['id']}", headers=headers)
    assert gone.status_code == 204, gone.text
    assert sql("SELECT count(*) FROM auth_identities WHERE subject = %s", subject) == [(0,)]
    returned, verifier = await trip(client, subject)
    refused = await exchange(client, returned["code"], verifier)
    assert refused.status_code == 403  # unknown now, and its email is not vouched for
    assert refused.json()["code"] == "provider_email_unverified"


async def test_a_provider_account_linked_elsewhere_is_not_taken(client, issuer, sign_up):
    subject, _ = person(issuer)
    await sign_in(client, subject)
    other = await sign_up()
    verifier, challenge = pkce_pair()
    started = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=bearer(other["access_token"]),
    )
    back = at_provider(started.json()["url"], subject)
    code = query_of((await client.get(path_of(back), follow_redirects=False)).headers["location"])[
        "code"
    ]
    taken = await exchange(client, code, verifier)
    assert taken.status_code == 409
    assert taken.json()["code"] == "identity_taken"


async def link_as(client, headers: dict[str, str], subject: str) -> None:
    """Link the provider's ``subject`` to the account of ``headers``' session."""
    verifier, challenge = pkce_pair()
    started = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=headers,
    )
    assert started.status_code == 200, started.text
    back = await client.get(
        path_of(at_provider(started.json()["url"], subject)), follow_redirects=False
    )
    linked = await exchange(client, query_of(back.headers["location"])["code"], verifier)
    assert linked.status_code == 200, linked.text


async def test_the_last_way_to_sign_in_cannot_be_unlinked(client, issuer):
    subject, _ = person(issuer)
    tokens = await sign_in(client, subject)  # no password: the identity is the only way in
    headers = bearer(tokens["access_token"])
    [identity] = (await client.get("/auth/identities", headers=headers)).json()["items"]
    refused = await client.delete(f"/auth/identities/{identity['id']}", headers=headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "last_sign_in_method"
    assert (await client.get("/auth/identities", headers=headers)).json()["items"] == [identity]
    # With a second provider account linked, either may go, and the other is then the last.
    other, _ = person(issuer, verified=False)
    await link_as(client, headers, other)
    gone = await client.delete(f"/auth/identities/{identity['id']}", headers=headers)
    assert gone.status_code == 204, gone.text
    [left] = (await client.get("/auth/identities", headers=headers)).json()["items"]
    refused = await client.delete(f"/auth/identities/{left['id']}", headers=headers)
    assert refused.status_code == 409


async def test_an_api_key_can_neither_link_nor_unlink(client, issuer, sign_up):
    account = await sign_up()
    key = await client.post(
        "/auth/api-keys", json={"name": "k"}, headers=bearer(account["access_token"])
    )
    headers = bearer(key.json()["key"])
    _, challenge = pkce_pair()
    link = await client.post(
        "/auth/identities/mock/link",
        json={"redirect_to": APP_RETURN, "code_challenge": challenge},
        headers=headers,
    )
    assert link.status_code == 403
    assert link.json()["code"] == "session_required"
    subject, _ = person(issuer)
    await link_as(client, bearer(account["access_token"]), subject)
    [identity] = (await client.get("/auth/identities", headers=headers)).json()["items"]
    unlink = await client.delete(f"/auth/identities/{identity['id']}", headers=headers)
    assert unlink.status_code == 403
    assert unlink.json()["code"] == "session_required"


async def test_the_provider_saying_no_goes_back_to_the_app_with_an_error(client):
    _, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/mock/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
        follow_redirects=False,
    )
    state = query_of(started.headers["location"])["state"]
    back = await client.get(
        "/auth/oauth/mock/callback",
        params={"state": state, "error": "access_denied"},
        follow_redirects=False,
    )
    assert back.status_code == 302
    assert query_of(back.headers["location"])["error"] == "access_denied"
    assert "code" not in query_of(back.headers["location"])


async def test_a_code_the_provider_refuses_goes_back_to_the_app_with_an_error(client, issuer):
    subject, _ = person(issuer)
    _, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/mock/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
        follow_redirects=False,
    )
    back = at_provider(started.headers["location"], subject)
    bogus = back.replace(f"code={query_of(back)['code']}", "code=not-the-providers")
    returned = await client.get(path_of(bogus), follow_redirects=False)
    assert returned.status_code == 302, returned.text
    told = query_of(returned.headers["location"])
    assert told["error"] == "provider_refused"
    assert "code" not in told


async def test_an_unknown_provider_is_404(client):
    _, challenge = pkce_pair()
    response = await client.get(
        "/auth/oauth/nope/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_github_signs_in_with_its_verified_primary_email(client, github, sql):
    login = f"octo{uuid.uuid4().hex[:6]}"
    address = new_email("gh")
    github.users[login] = GitHubUser(
        id=4242 + len(github.users),
        login=login,
        emails=[
            {"email": new_email("unverified"), "primary": False, "verified": False},
            {"email": address, "primary": True, "verified": True},
        ],
    )
    verifier, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/github/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
        follow_redirects=False,
    )
    assert started.status_code == 302
    assert query_of(started.headers["location"])["scope"] == "read:user user:email"
    back = github.sign_in(started.headers["location"], login)
    returned = await client.get(path_of(back), follow_redirects=False)
    code = query_of(returned.headers["location"])["code"]
    tokens = await exchange(client, code, verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["user"]["email"] == address
    assert tokens.json()["user"]["email_verified"] is True
    assert github.token_requests[-1]["client_secret"] == "gh-secret"
    assert sql(
        "SELECT subject, email FROM auth_identities WHERE user_id = %s", tokens.json()["user"]["id"]
    ) == [(str(github.users[login].id), address)]


async def test_github_without_a_verified_email_signs_nobody_in(client, github):
    login = f"octo{uuid.uuid4().hex[:6]}"
    github.users[login] = GitHubUser(
        id=9000 + len(github.users),
        login=login,
        emails=[{"email": new_email("gh"), "primary": True, "verified": False}],
    )
    verifier, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/github/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
        follow_redirects=False,
    )
    back = github.sign_in(started.headers["location"], login)
    code = query_of((await client.get(path_of(back), follow_redirects=False)).headers["location"])[
        "code"
    ]
    refused = await exchange(client, code, verifier)
    assert refused.status_code == 403
    assert refused.json()["code"] == "provider_email_unverified"


class _Discovery(BaseHTTPRequestHandler):
    """An OpenID configuration that counts how often it is read; /slow never answers in time."""

    hits = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)  # longer than the provider timeout the test sets: a provider that hangs
            return
        type(self).hits += 1
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        found = {"issuer": base, "authorization_endpoint": f"{base}/authorize"}
        answer_json(self, 200, {**found, "jwks_uri": f"{base}/k"})


async def _authorize_at(providers: SignInProviders) -> str:
    return await providers.authorization_url(
        providers.get("idp"), redirect_uri="http://x/cb", state="s", nonce="n", verifier="v" * 43
    )


@pytest.mark.parametrize(("cache_seconds", "reads"), [(3600, 1), (0, 3)])
async def test_discovery_is_cached_for_the_setting(cache_seconds, reads):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    _Discovery.hits = 0
    settings = settings_from_env(
        {},
        oauth_discovery_cache_seconds=cache_seconds,
        oauth_clients=[OAuthClient(name="idp", client_id="c", issuer=issuer)],
    )
    providers = SignInProviders(settings)
    with serving(server):
        for _ in range(3):
            assert (await _authorize_at(providers)).startswith(f"{issuer}/authorize?")
    await providers.aclose()
    assert _Discovery.hits == reads


async def test_a_provider_that_hangs_is_given_up_on_after_the_timeout():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/slow"
    settings = settings_from_env(
        {},
        oauth_timeout_seconds=0.3,
        oauth_clients=[OAuthClient(name="idp", client_id="c", issuer=issuer)],
    )
    providers = SignInProviders(settings)
    with serving(server):
        started = time.monotonic()
        with pytest.raises(UpstreamFailed):
            await _authorize_at(providers)
        assert time.monotonic() - started < 2
    await providers.aclose()


async def test_two_factor_still_guards_an_account_a_provider_signs_in_to(
    client, issuer, sign_up, sql, clock
):
    account = await sign_up()
    me = bearer(account["access_token"])
    sql("UPDATE users SET email_verified = true WHERE id = %s", account["user"]["id"])
    secret = (await client.post("/auth/mfa/totp", json={"password": PASSWORD}, headers=me)).json()
    code = pyotp.TOTP(secret["secret"]).at(clock.now())
    assert (await client.post("/auth/mfa/totp/enable", json={"code": code}, headers=me)).is_success
    subject, _ = person(issuer, email=account["user"]["email"])
    returned, verifier = await trip(client, subject)
    asked = await exchange(client, returned["code"], verifier)
    assert asked.status_code == 401
    assert asked.json()["code"] == "mfa_required"
    assert "access_token" not in asked.text
    # The provider is linked all the same: the next sign-in with it asks for the code again.
    assert sql("SELECT user_id FROM auth_identities WHERE subject = %s", subject) == [
        (uuid.UUID(account["user"]["id"]),)
    ]
    clock.advance(seconds=30)
    second = await client.post(
        "/auth/token",
        json={
            "grant_type": "mfa",
            "mfa_token": asked.json()["mfa_token"],
            "code": pyotp.TOTP(secret["secret"]).at(clock.now()),
        },
    )
    assert second.status_code == 200, second.text
    assert second.json()["user"]["id"] == account["user"]["id"]


async def test_a_provider_may_post_the_answer_back(client, issuer):
    """response_mode=form_post (Sign in with Apple): the same answer, as a form."""
    subject, address = person(issuer)
    verifier, challenge = pkce_pair()
    started = await client.get(
        "/auth/oauth/mock/authorize",
        params={"redirect_to": APP_RETURN, "code_challenge": challenge},
        follow_redirects=False,
    )
    answer = query_of(at_provider(started.headers["location"], subject))
    posted = await client.post(
        "/auth/oauth/mock/callback",
        data={"code": answer["code"], "state": answer["state"], "user": "{}"},
        follow_redirects=False,
    )
    assert posted.status_code == 302, posted.text
    code = query_of(posted.headers["location"])["code"]
    tokens = await exchange(client, code, verifier)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["user"]["email"] == address


NOTES = "/collections/notes/records"


async def test_a_guest_that_links_a_provider_is_a_guest_no_more(settings, clock, issuer, sql):
    guests = msgspec.structs.replace(settings, auth_anonymous_enabled=True)
    async with AsyncTestClient(create_app(guests, clock=clock)) as client:
        made = await client.post("/auth/token", json={"grant_type": "anonymous"})
        assert made.status_code == 200, made.text
        guest = made.json()
        headers = bearer(guest["access_token"])
        note = await client.post(
            "/collections/notes/records", json={"title": "mine"}, headers=headers
        )
        assert note.status_code == 201, note.text
        subject, _ = person(issuer)
        await link_as(client, headers, subject)
        user_id = guest["user"]["id"]
        assert sql("SELECT is_anonymous FROM users WHERE id = %s", user_id) == [(False,)]
        signed_in = await sign_in(client, subject)  # the provider now signs in to the same one
        assert signed_in["user"]["id"] == user_id
        kept = await client.get(
            f"{NOTES}/{note.json()['id']}",
            headers=bearer(signed_in["access_token"]),
        )
        assert kept.status_code == 200, kept.text


async def test_a_passkey_counts_as_a_way_to_sign_in(client, issuer):
    subject, _ = person(issuer)
    tokens = await sign_in(client, subject)  # no password: the identity is the only way in
    headers = bearer(tokens["access_token"])
    passkey = await registered_passkey(client, headers, SoftAuthenticator())
    [identity] = (await client.get("/auth/identities", headers=headers)).json()["items"]
    # The passkey is a way in: the provider account may go…
    gone = await client.delete(f"/auth/identities/{identity['id']}", headers=headers)
    assert gone.status_code == 204, gone.text
    # …and then the passkey is the last one.
    refused = await client.delete(f"/auth/passkeys/{passkey['id']}", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (409, "last_sign_in_method")
