"""Issue 18.11 and 18.6: the dev secret outside dev, tokens whose claims lie, the hash
embedder in prod, and forwarded headers that pick their own rate-limit bucket."""

from __future__ import annotations

import os
from datetime import timedelta
from uuid import UUID

import httpx
import pytest

from backend.auth.secrets import issue_access_token
from backend.config import DEV_SECRET_KEY, SettingsError, settings_from_env
from tests.e2e.conftest import litebase_api, run_python
from tests.integration.conftest import bearer, new_email
from tests.support import PROD_ENV, with_redis_db

REAL_KEY = "k" * 48


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.mark.parametrize("command", ["api", "worker", "beat"])
@pytest.mark.parametrize("secret", [None, DEV_SECRET_KEY, "short-but-not-a-placeholder"])
def test_serving_commands_refuse_a_placeholder_secret_unless_dev_or_test(command, secret):
    env = _without("LITEBASE_ENV", "SECRET_KEY")
    if secret is not None:
        env["SECRET_KEY"] = secret
    done = run_python("backend.cli", command, env=env, timeout=60)
    assert done.returncode != 0
    assert "SECRET_KEY" in done.stderr and "refuses" in done.stderr, done.stderr[-2000:]


def _session_of(sql, tokens) -> UUID:
    rows = sql("SELECT id FROM auth_sessions WHERE user_id = %s", tokens["user"]["id"])
    assert len(rows) == 1
    return UUID(str(rows[0][0]))


def _forged(settings, clock, *, sub: UUID, sid: UUID, role: str) -> str:
    return issue_access_token(
        secret_key=settings.secret_key,
        user_id=sub,
        session_id=sid,
        role=role,
        org_id=None,
        now=clock.now(),
        ttl=timedelta(minutes=5),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


async def test_a_token_whose_sub_is_not_its_sessions_user_is_refused(
    client, sign_up, settings, clock, sql
):
    """With the key (a leaked dev secret), one's own live session and a victim's id made a
    token acting as the victim."""
    attacker, victim = await sign_up(), await sign_up()
    sid = _session_of(sql, attacker)
    token = _forged(settings, clock, sub=UUID(victim["user"]["id"]), sid=sid, role="user")
    refused = await client.get("/auth/me", headers=bearer(token))
    assert refused.status_code == 401


async def test_the_role_comes_from_the_database_not_the_claim(
    client, sign_up, settings, clock, sql
):
    user = await sign_up()
    sid = _session_of(sql, user)
    token = _forged(settings, clock, sub=UUID(user["user"]["id"]), sid=sid, role="admin")
    assert (await client.get("/admin/users", headers=bearer(token))).status_code == 403
    assert (await client.get("/auth/me", headers=bearer(token))).json()["role"] == "user"


def test_prod_refuses_the_hash_embedder_unless_told():
    prod = {k: v for k, v in PROD_ENV.items() if k != "EMBEDDING_PROVIDER"}
    with pytest.raises(SettingsError, match="EMBEDDING_PROVIDER=hash"):
        settings_from_env(prod)
    assert settings_from_env({**prod, "EMBEDDING_ALLOW_HASH": "true"}).embedding_provider == "hash"
    assert settings_from_env({**prod, "EMBEDDING_PROVIDER": "openai"}).env == "prod"


def test_litebase_api_believes_forwarded_headers_only_from_forwarded_allow_ips(services, tmp_path):
    """X-Forwarded-For from anyone chose the client address: a new value per request was a
    new rate-limit bucket (and a way to lock someone else's out)."""
    with services.fresh_database() as database_url:
        env = {
            **_without("FORWARDED_ALLOW_IPS"),
            "LITEBASE_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": with_redis_db(services.redis_url, 15),
            "RATE_LIMIT_SIGNUP_PER_MINUTE": "2",
            "RELAY_ENABLED": "false",
        }
        with litebase_api(env, tmp_path / "api.log") as base:
            statuses = [
                httpx.post(
                    f"{base}/auth/signup",
                    json={"email": new_email(), "password": "correct horse battery staple"},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"},
                    timeout=10,
                ).status_code
                for n in range(3)
            ]
    assert statuses == [201, 201, 429]
