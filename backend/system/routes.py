"""GET /health (the process is up) and GET /ready (it can serve: Postgres, Redis, migrations)."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import Dependency
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.config import Settings
from backend.identity import Principal
from backend.problems import Problem, ProblemBody
from backend.system.service import readiness

log = logging.getLogger(__name__)


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
        principal: Principal | None,
    ) -> Ready:
        redis: Redis = state.redis
        result = await readiness(
            db_engine, redis, state.migration_heads, settings.ready_timeout_seconds
        )
        # Why a check failed (addresses, driver errors) is for admins and the log only.
        checks = result.checks
        if principal is None or not principal.is_admin:
            checks = {name: "ok" if v == "ok" else "failing" for name, v in checks.items()}
        if not result.ready:
            log.warning("not ready: %s", result.checks)
            raise Problem(503, "Not ready: " + ", ".join(result.failing), checks=checks)
        return Ready(status="ok", checks=checks)
