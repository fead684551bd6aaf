"""Issue 18.6: the failed sign-in counter let concurrent guesses past its limit (it read, then
checked the password, then counted), and was keyed by account alone, so anyone could lock a
person out of their account from anywhere. Against `litebase api` as shipped, with the tests
standing in for the load balancer (FORWARDED_ALLOW_IPS=127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import litebase_api
from tests.integration.conftest import PASSWORD, new_email
from tests.support import with_redis_db

LIMIT = 3


@pytest.fixture(scope="module")
def api(services, tmp_path_factory) -> Iterator[str]:
    with services.fresh_database() as database_url:
        env = {
            "PATH": "/usr/bin:/bin",
            "LITEBASE_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": with_redis_db(services.redis_url, 14),
            "RELAY_ENABLED": "false",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
            "AUTH_FAILED_SIGNIN_LIMIT": str(LIMIT),
        }
        with litebase_api(env, tmp_path_factory.mktemp("signin") / "api.log") as base:
            yield base


def _account(api: str) -> str:
    email = new_email("victim")
    signed_up = httpx.post(
        f"{api}/auth/signup", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert signed_up.status_code == 201
    return email


def _sign_in(api: str, email: str, password: str, address: str) -> int:
    return httpx.post(
        f"{api}/auth/token",
        json={"grant_type": "password", "email": email, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=30,
    ).status_code


async def test_concurrent_guesses_cannot_slip_under_the_limit(api):
    email = _account(api)
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        guesses = [
            client.post(
                "/auth/token",
                json={"grant_type": "password", "email": email, "password": f"guess {n}"},
                headers={"X-Forwarded-For": "203.0.113.5"},
            )
            for n in range(12)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))
    assert statuses == [401] * LIMIT + [429] * (12 - LIMIT)


def test_a_person_is_not_locked_out_by_guesses_from_another_address(api):
    email = _account(api)
    attacker = [_sign_in(api, email, "wrong", "203.0.113.9") for _ in range(LIMIT + 2)]
    assert attacker == [401] * LIMIT + [429, 429]
    assert _sign_in(api, email, PASSWORD, "198.51.100.7") == 200
