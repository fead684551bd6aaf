"""Property-based fuzzing of every HTTP operation in the app's own OpenAPI document.

Schemathesis generates requests from the document the app serves at ``/schema/openapi.json``
(valid ones and ones that break the schema) and sends them in-process through the ASGI app,
signed in as a user with an API key (as an admin on the admin routes). No answer may be a 5xx,
and an answer the document describes must match it. The gateway routes, streaming included,
reach the fake upstream. The WebSocket route is not in the document, so it is not fuzzed.
The committed run is small so ``make test`` stays fast; ``FUZZ_EXAMPLES=1000`` runs it hard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from litestar.serialization import encode_json
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.python import asgi

from backend.app import create_app
from backend.config import settings_from_env
from backend.lib.urls import libpq_database_url
from backend.openapi_document import finished_document
from tests.conftest import INTEGRATION_REDIS_DB
from tests.fake_openai import FakeOpenAI
from tests.integration.conftest import PASSWORD, new_email
from tests.support import Services, with_redis_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
# One worker sets the fuzzed app up once (module fixture) and runs every case of it.
pytestmark = pytest.mark.xdist_group("fuzz")

MODELS = """
providers:
  fake: {{base_url: "{base_url}", api_key: sk-fake-secret}}
models:
  chat: {{provider: fake, model: fake-chat, retries: 0}}
  embed: {{provider: fake, model: fake-embed, retries: 0}}
"""

# Routes an admin calls; every other route is fuzzed as an ordinary user.
ADMIN_PREFIXES = ("/admin/", "/ai/budgets")


class Fuzzed(msgspec.Struct):
    app: Any
    user: dict[str, str]
    admin: dict[str, str]


def _sign_up(client: Any) -> tuple[str, dict[str, str]]:
    """A new account and an API key for it (a key survives the fuzzed logout and session routes)."""
    response = client.post("/auth/signup", json={"email": new_email("fuzz"), "password": PASSWORD})
    assert response.status_code == 201, response.text
    user_id = response.json()["user"]["id"]
    token = {"Authorization": f"Bearer {response.json()['access_token']}"}
    key = client.post("/auth/api-keys", json={"name": "fuzz"}, headers=token)
    assert key.status_code == 201, key.text
    return user_id, {"Authorization": f"Bearer {key.json()['key']}"}


@pytest.fixture(scope="module")
def fuzzed(
    services: Services, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    models = tmp_path_factory.mktemp("fuzz") / "models.yaml"
    models.write_text(MODELS.format(base_url=upstream.base_url))
    redis_url = with_redis_db(services.redis_url, INTEGRATION_REDIS_DB)
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()
    with services.fresh_database() as database_url:
        app_settings = settings_from_env(
            {},
            env="test",
            database_url=database_url,
            redis_url=redis_url,
            relay_enabled=False,
            models_file=str(models),
            openai_api_key="sk-test",
            openai_base_url=upstream.base_url,
            # The limiter would answer most auth calls with 429 and hide what is behind it.
            rate_limit_signup_per_minute=100_000,
            rate_limit_token_per_minute=100_000,
            rate_limit_password_per_minute=100_000,
            rate_limit_user_per_minute=0,
            rate_limit_key_per_minute=0,
            rate_limit_anonymous_per_minute=0,
            # Uploads the fuzzer makes go to the session's folder, not the working directory.
            files_local_dir=str(tmp_path_factory.mktemp("fuzz-files")),
        )
        app = create_app(app_settings)
        try:
            with asgi.get_client(app) as client:
                _, user = _sign_up(client)
                admin_id, admin = _sign_up(client)
            _make_admin(database_url, admin_id)
            yield Fuzzed(app=app, user=user, admin=admin)
        finally:
            # The app's lifespan runs in schemathesis' event-loop thread until stopped here,
            # before its database is dropped.
            asgi.shutdown_lifespans()


def _make_admin(database_url: str, user_id: str) -> None:
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as conn:
        conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (user_id,))


def _openapi_document() -> dict[str, Any]:
    """The document the app serves; building it talks to no database, so it can run at import."""
    offline = settings_from_env(
        {}, env="test", database_url="postgresql://fuzz@/fuzz", redis_url="redis://fuzz/0"
    )
    # As served: encoded to JSON (the in-memory schema holds its examples as Python objects).
    served = encode_json(finished_document(create_app(offline)).to_schema())
    document: dict[str, Any] = json.loads(served)
    return document


# A tus PATCH (and a POST that starts with bytes) carries the file's bytes as they are.
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=256))

schema = schemathesis.openapi.from_dict(_openapi_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case: Any, fuzzed: Fuzzed) -> None:
    path = case.operation.path
    headers = fuzzed.admin if path.startswith(ADMIN_PREFIXES) else fuzzed.user
    case.call_and_validate(
        app=fuzzed.app, headers=headers, checks=[not_a_server_error, response_schema_conformance]
    )
