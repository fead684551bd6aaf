"""Collections: the REST routes of every collection, and the read pool they read through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from backend.capability import Basics, Capability
from backend.collections.reads import Reader, create_read_pool
from backend.collections.routes import collection_routers
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.lib.urls import libpq_database_url


def collections_capability(
    basics: Basics, registry: CollectionRegistry, rules: dict[str, CompiledRules]
) -> Capability:
    settings = basics.settings

    @asynccontextmanager
    async def open_read_pool(app: Litestar) -> AsyncIterator[None]:
        assert settings.database_url is not None
        pool = await create_read_pool(
            libpq_database_url(settings.database_url), settings.db_pool_size
        )
        app.state.reader = Reader(pool)
        try:
            yield
        finally:
            await pool.close()

    return Capability(
        "collections",
        routes=collection_routers(registry, rules, settings),
        lifespans=[open_read_pool],
        state={"collections": registry},
    )
