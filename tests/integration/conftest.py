"""Helpers for the auth and org tests: sign people up, act as them, make admins and members."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from backend.lib.urls import libpq_database_url

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
