"""Session-wide services for the integration and e2e suites (unit tests start nothing)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from backend.config import Settings, settings_from_env
from backend.lib.clock import FrozenClock
from tests.fake_openai import FakeOpenAI, fake_openai
from tests.support import (
    TEST_PASSWORD_HASH,
    S3Server,
    Services,
    s3_on_loopback,
    start_services,
    use_memory_for_temporary_files,
    with_redis_db,
    worker_redis_db,
)

INTEGRATION_REDIS_DB = worker_redis_db(1)


def pytest_configure(config: pytest.Config) -> None:
    """No test, and no process a test starts, reads the developer's own ``.env``; their
    temporary files live in memory when the machine has room (before pytest-xdist starts its
    workers, so they inherit it)."""
    os.environ["LITEBASE_ENV_FILE"] = os.devnull
    use_memory_for_temporary_files()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with start_services() as running:
        yield running


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible provider on loopback (tests/fake_openai.py)."""
    with fake_openai() as running:
        yield running


@pytest.fixture
def database_url(services: Services) -> Iterator[str]:
    """A fresh database, migrated to head, for this test alone."""
    with services.fresh_database() as url:
        yield url


@pytest.fixture
def redis_url(services: Services) -> str:
    """A Redis database emptied for this test."""
    url = with_redis_db(services.redis_url, INTEGRATION_REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path) -> Settings:
    # The relay has tests of its own; an app per test need not start one. Files go to the
    # test's own folder, never to the working directory's data dir.
    return settings_from_env(
        {},
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        relay_enabled=False,
        files_local_dir=str(tmp_path / "files"),
        **TEST_PASSWORD_HASH,
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 on loopback (its server mode speaks the S3 wire protocol), for the session."""
    with s3_on_loopback() as running:
        yield running


@pytest.fixture
def clock() -> FrozenClock:
    """The app's clock in integration tests: it moves only when a test advances it."""
    return FrozenClock()


@pytest.fixture
async def client(settings: Settings, clock: FrozenClock) -> AsyncIterator[object]:
    from litestar.testing import AsyncTestClient

    from backend.app import create_app

    async with AsyncTestClient(create_app(settings, clock=clock)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def stack(
    services: Services, upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """`litebase api` and `litebase worker` as processes, for the e2e and the security tests:
    one per xdist worker (tests/e2e/conftest.py's ``session_stack``)."""
    from tests.e2e.conftest import session_stack

    yield from session_stack(services, upstream, tmp_path_factory)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `pytest -m unit` (or integration, e2e) selects a tier.

    Under pytest-xdist (`make test` runs TEST_WORKERS, `--dist loadgroup`) tests are spread one
    by one. Each worker starts its own e2e stack (``stack``) the first time one of its tests
    asks for it, so e2e tests run beside each other on two stacks. A file whose tests must stay
    on one worker says so itself (``pytestmark = pytest.mark.xdist_group(...)``): a marker
    added here would come too late, as pytest-xdist reads the groups before this hook runs."""
    for item in items:
        for tier in ("unit", "integration", "e2e", "security"):
            if f"/tests/{tier}/" in str(item.path):
                item.add_marker(getattr(pytest.mark, tier))
    _refuse_duplicate_node_ids(items)


def _refuse_duplicate_node_ids(items: list[pytest.Item]) -> None:
    """Two tests with one node id are one test to pytest-xdist: it runs the first and reports it
    for all. pytest 9.2 gave every schemathesis-parametrized case the same id, so the API fuzz
    ran one operation of ~100 and passed; this makes such a run fail at collection instead."""
    seen: dict[str, int] = {}
    for item in items:
        seen[item.nodeid] = seen.get(item.nodeid, 0) + 1
    repeated = sorted(node for node, count in seen.items() if count > 1)
    if repeated:
        raise pytest.UsageError(
            f"{len(repeated)} node ids name more than one test, e.g. {repeated[0]}: "
            "pytest-xdist would run one of each"
        )
