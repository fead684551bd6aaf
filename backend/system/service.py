"""Readiness checks, each bounded in time so /ready answers even when a dependency hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine


class CheckFailed(Exception):
    """A dependency answered, but not as a ready deployment must."""


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    checks: dict[str, str]

    @property
    def failing(self) -> list[str]:
        return [name for name, result in self.checks.items() if result != "ok"]


async def check_postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def check_migrations(engine: AsyncEngine, heads: frozenset[str]) -> None:
    async with engine.connect() as connection:
        try:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except ProgrammingError as exc:
            raise CheckFailed("no migrations applied; run `litebase migrate`") from exc
        current = frozenset(row[0] for row in rows)
    if current != heads:
        have, want = ",".join(sorted(current)) or "none", ",".join(sorted(heads))
        raise CheckFailed(f"database at {have}, code expects {want}; run `litebase migrate`")


async def check_redis(client: Redis) -> None:
    await client.ping()


async def _run(check: Callable[[], Awaitable[None]], seconds: float) -> str:
    try:
        async with asyncio.timeout(seconds):
            await check()
    except TimeoutError:
        return f"timed out after {seconds}s"
    except CheckFailed as exc:
        return str(exc)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
    return "ok"


async def readiness(
    engine: AsyncEngine, redis: Redis, heads: frozenset[str], seconds: float
) -> Readiness:
    postgres, redis_result = await asyncio.gather(
        _run(lambda: check_postgres(engine), seconds),
        _run(lambda: check_redis(redis), seconds),
    )
    migrations = (
        await _run(lambda: check_migrations(engine, heads), seconds)
        if postgres == "ok"
        else "unknown: postgres is unreachable"
    )
    checks = {"postgres": postgres, "redis": redis_result, "migrations": migrations}
    return Readiness(ready=all(v == "ok" for v in checks.values()), checks=checks)
