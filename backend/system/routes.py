"""GET /health (the process is up) and GET /ready (it can serve: Postgres, Redis, migrations)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import Dependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.problems import Problem, ProblemBody
from backend.system.service import readiness


class Health(msgspec.Struct, frozen=True):
    status: str


class Ready(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, str]


class SystemController(Controller):
    tags = ["system"]

    @get("/health", summary="Liveness: the process is up", cache=False)
    async def health(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness: Postgres, Redis and migrations",
        cache=False,
        responses={
            503: ResponseSpec(
                ProblemBody,
                description="A dependency is down; `checks` names it",
                media_type="application/problem+json",
            )
        },
    )
    async def ready(
        self,
        state: State,
        db_engine: Annotated[AsyncEngine, Dependency(skip_validation=True)],
        settings: Annotated[Settings, Dependency(skip_validation=True)],
    ) -> Ready:
        redis: Redis = state.redis
        result = await readiness(
            db_engine, redis, state.migration_heads, settings.ready_timeout_seconds
        )
        if not result.ready:
            raise Problem(
                503,
                "Not ready: " + ", ".join(result.failing),
                checks=result.checks,
            )
        return Ready(status="ok", checks=result.checks)
