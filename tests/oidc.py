"""Sign-in providers for the OAuth tests, as real servers on loopback: an OpenID provider
(oidc-provider-mock's WSGI app, in a thread) and a small fake of GitHub's OAuth and API
endpoints; and the browser's part of the trip (PKCE pair, the provider's form, the way back).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import oidc_provider_mock

from backend.config import OAuthClient, Settings, settings_from_env
from tests.integration.conftest import new_email
from tests.support import answer_json, serving

APP = "https://app.example.com"
APP_RETURN = f"{APP}/auth/done"


@contextmanager
def oidc_provider() -> Iterator[str]:
    """A real OpenID provider on loopback (any client id and secret); its issuer URL."""
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


def provider_user(issuer: str, sub: str, **claims: Any) -> None:
    """The claims the provider gives for ``sub`` (email, email_verified, name, …)."""
    response = httpx.put(f"{issuer}/users/{quote(sub, safe='')}", json=claims, timeout=10)
    assert response.status_code == 204, response.text


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), as the app makes them."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def at_provider(url: str, sub: str) -> str:
    """The person picks ``sub`` on the provider's authorization form; where the provider sends
    the browser (the Litebase callback, with code and state)."""
    with httpx.Client(timeout=10) as browser:
        form = browser.get(url)
        assert form.status_code == 200, form.text
        assert 'name="sub"' in form.text  # the mock's sign-in form
        chosen = browser.post(url, data={"sub": sub})
        assert chosen.status_code == 302, chosen.text
        return chosen.headers["location"]


def through_provider(api_url: str, url: str, sub: str) -> str:
    """The whole trip against an API on a port (the Python client's tests): from its authorize
    URL (or the provider's, for a link) through the provider as ``sub`` and the API's callback;
    the URL the app is sent back to."""
    with httpx.Client(timeout=10) as browser:
        if url.startswith(api_url):
            leaving = browser.get(url)
            assert leaving.status_code == 302, leaving.text
            url = leaving.headers["location"]
        back = browser.get(api_url + path_of(at_provider(url, sub)))
        assert back.status_code == 302, back.text
        return back.headers["location"]


def path_of(url: str) -> str:
    """``url`` without its scheme and host (the in-process test client's request target)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# --- the app's part, against the API in process -----------------------------------------------


def oauth_settings(database_url: str, redis_url: str, issuer: str, **more: Any) -> Settings:
    return settings_from_env(
        {},
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        relay_enabled=False,
        auth_redirect_urls=[APP_RETURN, f"{APP}/app/*"],
        oauth_clients=[
            OAuthClient(
                name="mock", client_id="litebase", client_secret="s3cret", issuer=issuer,
                display_name="Mock ID",
            ),
            *more.pop("clients", []),
        ],
        **more,
    )  # fmt: skip


def person(issuer: str, *, verified: bool = True, email: str | None = None) -> tuple[str, str]:
    """A person at the provider: (subject, email)."""
    subject = f"sub-{uuid.uuid4().hex[:10]}"
    address = email or new_email("oidc")
    provider_user(issuer, subject, email=address, email_verified=verified, name="Ada")
    return subject, address


async def trip(
    client, subject: str, *, provider: str = "mock", redirect_to: str = APP_RETURN
) -> tuple[dict[str, str], str]:
    """Sign in at the provider as ``subject``: (what the app's redirect_to is given, verifier)."""
    verifier, challenge = pkce_pair()
    started = await client.get(
        f"/auth/oauth/{provider}/authorize",
        params={"redirect_to": redirect_to, "code_challenge": challenge},
        follow_redirects=False,
    )
    assert started.status_code == 302, started.text
    back = at_provider(started.headers["location"], subject)
    returned = await client.get(path_of(back), follow_redirects=False)
    assert returned.status_code == 302, returned.text
    location = returned.headers["location"]
    assert location.startswith(redirect_to), location
    return query_of(location), verifier


async def exchange(client, code: str, verifier: str, **more: Any):
    return await client.post(
        "/auth/token",
        json={"grant_type": "oauth_code", "code": code, "code_verifier": verifier, **more},
    )


async def sign_in(client, subject: str) -> dict[str, Any]:
    returned, verifier = await trip(client, subject)
    response = await exchange(client, returned["code"], verifier)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


# --- a fake of GitHub's OAuth endpoints and API ----------------------------------------------


@dataclass
class GitHubUser:
    id: int
    login: str
    emails: list[dict[str, Any]]


@dataclass
class FakeGitHub:
    """github.com's /login/oauth/authorize and /access_token, api.github.com's /user and
    /user/emails: a code is issued for the user a test picks, and its token reads them."""

    base_url: str = ""
    users: dict[str, GitHubUser] = field(default_factory=dict)
    codes: dict[str, tuple[str, str, str]] = field(
        default_factory=dict
    )  # code → login, verifier hash, redirect
    tokens: dict[str, str] = field(default_factory=dict)  # token → login
    token_requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sign_in(self, authorize_url: str, login: str) -> str:
        """The person approves as ``login``: where GitHub sends the browser back."""
        response = httpx.get(f"{authorize_url}&{urlencode({'login': login})}", timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["location"]


class _GitHubHandler(BaseHTTPRequestHandler):
    server: _GitHubServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/login/oauth/authorize":
            assert query["code_challenge_method"] == "S256" and query["response_type"] == "code"
            code = secrets.token_urlsafe(16)
            with fake.lock:
                fake.codes[code] = (query["login"], query["code_challenge"], query["redirect_uri"])
            back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            self.send_response(302)
            self.send_header("location", back)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        login = fake.tokens.get(self.headers.get("authorization", "").removeprefix("Bearer "))
        if login is None:
            return answer_json(self, 401, {"message": "Bad credentials"})
        user = fake.users[login]
        if url.path == "/user":
            return answer_json(
                self, 200, {"id": user.id, "login": user.login, "name": None, "email": None}
            )
        if url.path == "/user/emails":
            return answer_json(self, 200, user.emails)
        answer_json(self, 404, {"message": "Not Found"})

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length", "0"))
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        fake.token_requests.append(form)
        if urlsplit(self.path).path != "/login/oauth/access_token":
            return answer_json(self, 404, {"message": "Not Found"})
        with fake.lock:
            found = fake.codes.pop(form.get("code", ""), None)
        challenge = (
            base64.urlsafe_b64encode(
                hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            )
            .rstrip(b"=")
            .decode()
        )
        if found is None or found[1] != challenge or found[2] != form.get("redirect_uri"):
            # GitHub answers a bad code with 200 and an error member.
            return answer_json(self, 200, {"error": "bad_verification_code"})
        token = secrets.token_urlsafe(16)
        fake.tokens[token] = found[0]
        granted = {"access_token": token, "token_type": "bearer", "scope": "user:email"}
        answer_json(self, 200, granted)


class _GitHubServer(ThreadingHTTPServer):
    def __init__(self, fake: FakeGitHub) -> None:
        super().__init__(("127.0.0.1", 0), _GitHubHandler)
        self.fake = fake


@contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    server = _GitHubServer(fake)
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving(server):
        yield fake
