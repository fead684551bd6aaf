"""Helpers for the auth and org tests: sign people up, act as them, make admins and members."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import psycopg
import pytest
import redis

from backend.auth.secrets import hash_token
from backend.lib.urls import libpq_database_url
from backend.mail.compose import Mail
from backend.mail.service import SEND_MAIL_TASK
from tests.soft_authenticator import SoftAuthenticator

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_email(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


SignUp = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def sign_up(client) -> SignUp:
    async def _sign_up(email: str | None = None, password: str = PASSWORD, **extra: Any):
        response = await client.post(
            "/auth/signup", json={"email": email or new_email(), "password": password, **extra}
        )
        assert response.status_code == 201, response.text
        return response.json()

    return _sign_up


@pytest.fixture
def sql(database_url):
    """Run one statement against the test database (for setup the API has no route for)."""

    def _sql(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(libpq_database_url(database_url), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    return _sql


@pytest.fixture
def make_admin(sql):
    def _make_admin(user_id: str) -> None:
        sql("UPDATE users SET role = 'admin' WHERE id = %s", user_id)

    return _make_admin


@pytest.fixture
async def admin_tokens(client, sign_up, make_admin) -> dict[str, Any]:
    """A new admin's token response."""
    return await signed_in_admin(client, sign_up, make_admin)


async def signed_in_admin(client, sign_up, make_admin) -> dict[str, Any]:
    """A new admin's token response, signed in after the promotion so the token carries it
    (for a test that needs more than one admin; else the ``admin_tokens`` fixture)."""
    account = await sign_up()
    make_admin(account["user"]["id"])
    response = await client.post(
        "/auth/token",
        json={"grant_type": "password", "email": account["user"]["email"], "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@pytest.fixture
def admin(admin_tokens) -> dict[str, str]:
    """Authorization headers of a new admin."""
    return bearer(admin_tokens["access_token"])


@pytest.fixture
def add_member(sql):
    def _add_member(org_id: str, user_id: str, role: str = "member") -> None:
        sql(
            "INSERT INTO org_members (id, org_id, user_id, role, created_at, updated_at)"
            " VALUES (gen_random_uuid(), %s, %s, %s, now(), now())",
            org_id,
            user_id,
            role,
        )

    return _add_member


async def mailed_sign_in_code(client, sql, email: str, user_id: str) -> str:
    """Ask for a sign-in code (POST /auth/otp), and set it to one the test knows: the real one
    only goes out by mail."""
    assert (await client.post("/auth/otp", json={"email": email})).json() == {"status": "accepted"}
    code = f"{secrets.randbelow(10**6):06d}"
    sql(
        "UPDATE auth_email_tokens SET token_hash = %s"
        " WHERE purpose = 'sign_in_code' AND used_at IS NULL AND user_id = %s",
        hash_token(f"{user_id}:{code}"),
        user_id,
    )
    return code


@pytest.fixture
def queued_mail(redis_url) -> Callable[[], list[Mail]]:
    """The mail the API queued for the workers (no worker runs in these tests): each mail.send
    task in the broker's ``mail`` queue, oldest first, as the worker would read it."""

    def _queued() -> list[Mail]:
        with redis.Redis.from_url(redis_url) as broker:
            messages = [json.loads(raw) for raw in broker.lrange("mail", 0, -1)]
        mails = []
        for message in reversed(messages):  # kombu pushes on the left
            if message["headers"]["task"] != SEND_MAIL_TASK:
                continue
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            mails.append(msgspec.convert(kwargs, Mail))
        return mails

    return _queued


def known_mailed_token(sql, user_id: str, purpose: str) -> str:
    """Replace the user's latest unused mailed token of ``purpose`` (password_reset,
    verify_email, email_change) with one the test knows: the real one only goes out by mail."""
    token = secrets.token_urlsafe(24)
    updated = sql(
        "UPDATE auth_email_tokens SET token_hash = %s WHERE id = ("
        " SELECT id FROM auth_email_tokens WHERE purpose = %s AND used_at IS NULL"
        " AND user_id = %s ORDER BY created_at DESC LIMIT 1) RETURNING id",
        hash_token(token),
        purpose,
        user_id,
    )
    assert len(updated) == 1, f"no unused {purpose} token"
    return token


async def in_org(client, tokens: dict[str, Any], org_id: str) -> dict[str, Any]:
    """``tokens``' session switched to act in ``org_id``: the new token response."""
    refreshed = await client.post(
        "/auth/token",
        json={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "org_id": org_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    switched: dict[str, Any] = refreshed.json()
    return switched


async def registered_passkey(
    client, headers: dict[str, str], authenticator: SoftAuthenticator, name: str | None = None
) -> dict[str, Any]:
    """Register a passkey of ``authenticator`` for the caller of ``headers``: its view."""
    options = await client.post("/auth/passkeys/register/options", headers=headers)
    assert options.status_code == 200, options.text
    credential = authenticator.create(options.json()["publicKey"])
    body = {"credential": credential, **({"name": name} if name else {})}
    made = await client.post("/auth/passkeys", json=body, headers=headers)
    assert made.status_code == 201, made.text
    view: dict[str, Any] = made.json()
    return view


async def passkey_assertion(
    client, authenticator: SoftAuthenticator, mfa_token: str | None = None, **how: Any
) -> dict[str, Any]:
    """Ask for sign-in options (for the second step of ``mfa_token``'s sign-in, when given) and
    answer them with ``authenticator`` (``how``: its ``credential`` or ``origin``)."""
    body = {"mfa_token": mfa_token} if mfa_token else {}
    options = await client.post("/auth/passkeys/sign-in/options", json=body)
    assert options.status_code == 200, options.text
    return authenticator.get(options.json()["publicKey"], **how)
