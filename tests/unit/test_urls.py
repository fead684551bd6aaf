import pytest

from backend.lib.urls import (
    async_database_url,
    celery_redis_url,
    libpq_database_url,
    sync_database_url,
)

SOCKET_URL = "postgresql://postgres:@/postgres?host=/tmp/lb/pg"


@pytest.mark.parametrize(
    ("convert", "url", "expected"),
    [
        (async_database_url, "postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        (
            async_database_url,
            SOCKET_URL,
            "postgresql+asyncpg://postgres:@/postgres?host=/tmp/lb/pg",
        ),
        (sync_database_url, "postgresql+asyncpg://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            libpq_database_url,
            "postgresql+psycopg://u@h/db?sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        (celery_redis_url, "redis://h:6379/0", "redis://h:6379/0"),
        (celery_redis_url, "unix:///tmp/r/redis.sock", "redis+socket:///tmp/r/redis.sock"),
        (
            celery_redis_url,
            "unix:///tmp/r/redis.sock?db=3",
            "redis+socket:///tmp/r/redis.sock?virtual_host=3",
        ),
    ],
)
def test_urls_are_spelled_for_each_driver(convert, url, expected):
    assert convert(url) == expected


def test_a_non_postgres_url_is_refused():
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        async_database_url("mysql://u@h/db")


def test_a_password_given_on_its_own_goes_into_its_url():
    from backend.config import SettingsError, settings_from_env

    settings = settings_from_env(
        {
            "DATABASE_URL": "postgresql://litebase@db.internal:5432/litebase?sslmode=require",
            "DATABASE_PASSWORD": "p@ss/w:rd",
            "REDIS_URL": "rediss://cache.internal:6379/0",
            "REDIS_PASSWORD": "token",
        }
    )
    assert settings.database_url == (
        "postgresql://litebase:p%40ss%2Fw%3Ard@db.internal:5432/litebase?sslmode=require"
    )
    assert settings.redis_url == "rediss://:token@cache.internal:6379/0"
    replaced = settings_from_env(
        {"DATABASE_URL": "postgresql://u:old@h/db", "DATABASE_PASSWORD": "new"}
    )
    assert replaced.database_url == "postgresql://u:new@h/db"
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        settings_from_env({"DATABASE_URL": "postgresql:///db", "DATABASE_PASSWORD": "x"})
