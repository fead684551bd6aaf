"""create_app(): the API as a list of capabilities (backend/capability.py), each contributing
its routes, plugins, dependencies, lifespans, state and relay consumers from its own package,
assembled around the clients they share."""

from __future__ import annotations

import gc
import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.types import ControllerRouterHandler
from redis.asyncio import BlockingConnectionPool, Redis

import backend
from backend.ai.capability import ai_capability
from backend.auth.capability import auth_capability
from backend.capability import Basics, Capability
from backend.collections.capability import collections_capability
from backend.collections.rules import compile_rules
from backend.collections.spec import CollectionRegistry
from backend.config import Settings, SettingsError, get_settings
from backend.db.base import metadata
from backend.db.transactions import request_session
from backend.events.capability import relay_capability
from backend.events.tracing import start_tracing
from backend.files.capability import files_capability
from backend.inputs import FINISH_DOCUMENT, check_input
from backend.jobs.capability import jobs_capability
from backend.lib.clock import Clock, SystemClock
from backend.lib.tracing import litestar_plugins
from backend.lib.urls import async_database_url
from backend.logs import configure_logging
from backend.openapi import document_answers, operation_id_of
from backend.openapi_document import document_router, finished_document
from backend.orgs.capability import orgs_capability
from backend.paging import paging_provider
from backend.problems import problem_details_config
from backend.realtime.capability import realtime_capability
from backend.system.capability import system_capability
from backend.vectors.capability import vectors_capability
from backend.webhooks.capability import webhooks_capability
from workers.celery_app import create_celery_app


def _database_config(settings: Settings, database_url: str) -> SQLAlchemyAsyncConfig:
    return SQLAlchemyAsyncConfig(
        connection_string=async_database_url(database_url),
        metadata=metadata,
        engine_config=EngineConfig(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_recycle=1800,
        ),
        session_config=AsyncSessionConfig(expire_on_commit=False),
        # The plugin opens and closes the request's session; backend/db/transactions.py owns
        # its transaction (decision 0011), as the ``db_session`` the routes ask for.
        session_dependency_key="transaction_session",
    )


def create_app(
    settings: Settings | None = None,
    *,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    clock: Clock | None = None,
    collections: CollectionRegistry | None = None,
) -> Litestar:
    """Build the API. ``route_handlers`` adds an app's own routes beside Litebase's;
    ``clock`` lets tests move time; ``collections`` defaults to backend/app_collections."""
    settings = settings or get_settings()
    if not settings.database_url:
        raise SettingsError("DATABASE_URL is not set (`litebase dev` sets it for you)")
    if not settings.redis_url:
        raise SettingsError("REDIS_URL is not set (`litebase dev` sets it for you)")
    configure_logging(settings)
    # Off (no tracer installed) unless OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/tracing.md).
    start_tracing(settings, "api")
    # Clients connect lazily: nothing here talks to Redis or the broker yet.
    basics = Basics(
        settings=settings,
        # A bounded pool that makes a burst wait for a connection rather than fail at once.
        redis=Redis(
            connection_pool=BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=settings.redis_max_connections,
                timeout=settings.redis_pool_timeout_seconds,
            )
        ),
        clock=clock or SystemClock(),
        celery=create_celery_app(settings),
        # Its sessions outside a handler's db_session (its engine's state key is unique per app).
        database=_database_config(settings, settings.database_url),
    )
    registry = collections or CollectionRegistry.discover()
    rules = compile_rules(registry, settings)
    # In this order: each may use what an earlier one put in app.state at start-up.
    capabilities = [
        system_capability(settings),
        auth_capability(basics),
        orgs_capability(),
        collections_capability(basics, registry, rules),
        files_capability(basics, registry, rules),
        realtime_capability(basics, registry, rules),
        vectors_capability(basics, registry, rules),
        webhooks_capability(basics),
        jobs_capability(registry),
        ai_capability(basics, registry, rules),
    ]
    consumers = [make for capability in capabilities for make in capability.consumers]
    capabilities.append(relay_capability(basics, consumers))  # last: it feeds the others
    return _assemble(basics, capabilities, [*route_handlers, *_your_routes(settings)])


def _your_routes(settings: Settings) -> list[ControllerRouterHandler]:
    """Import APP_MODULES (their job types register as they load); their ``route_handlers``."""
    routes: list[ControllerRouterHandler] = []
    for name in settings.app_modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise SettingsError(
                f"APP_MODULES names {name!r}, which cannot be imported ({exc})"
            ) from exc
        routes += getattr(module, "route_handlers", [])
    return routes


def _assemble(
    basics: Basics,
    capabilities: Sequence[Capability],
    route_handlers: Sequence[ControllerRouterHandler],
) -> Litestar:
    """One Litestar app of the capabilities' parts, around the basics every one shares."""
    settings, redis, celery = basics.settings, basics.redis, basics.celery

    @asynccontextmanager
    async def close_clients(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()
            celery.close()

    @asynccontextmanager
    async def freeze_startup_objects(app: Litestar) -> AsyncIterator[None]:
        # What start-up built (routes, models, compiled rules, SQLAlchemy's and Litestar's own
        # structures) lives as long as the app: moved out of the collector's generations, the
        # full collections that allocation on every request triggers stop re-scanning it
        # (py-spy: ~6% of a list request was gc_collect_main). Unfrozen on the way out, so an
        # app that stops (tests build many) is collected as usual. The young generations are
        # collected first, so start-up's own garbage is not frozen; a full collection would
        # also walk everything the process held before (0.2 s in a test process, per app).
        gc.collect(1)
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()

    def provide_settings() -> Settings:
        return settings

    app = Litestar(
        route_handlers=[*(r for c in capabilities for r in c.routes), *route_handlers],
        plugins=[
            SQLAlchemyPlugin(config=basics.database),
            ProblemDetailsPlugin(problem_details_config()),
            *(plugin for c in capabilities for plugin in c.plugins),
            *litestar_plugins(),
        ],
        middleware=[m for c in capabilities for m in c.middleware],
        # Postgres cannot store a NUL character, a query value must be of its type: refused as a
        # 422 before any route runs (backend/inputs.py).
        before_request=check_input,
        lifespan=[
            close_clients,
            *(lifespan for c in capabilities for lifespan in c.lifespans),
            freeze_startup_objects,
        ],
        dependencies={
            "settings": Provide(provide_settings, sync_to_thread=False),
            "paging": Provide(paging_provider(settings), sync_to_thread=False),
            "db_session": Provide(request_session),
            **{k: v for c in capabilities for k, v in c.dependencies.items()},
        },
        stores={k: v for c in capabilities for k, v in c.stores.items()},
        state=State(
            {
                "settings": settings,
                "redis": redis,
                "clock": basics.clock,
                # The document, which gives queries their types, is finished when first needed.
                FINISH_DOCUMENT: finished_document,
                "celery": celery,
                "database": basics.database,
                **{k: v for c in capabilities for k, v in c.state.items()},
                # Each job type's input check, from the capability that owns the type.
                "job_input_checks": {
                    k: v for c in capabilities for k, v in c.job_input_checks.items()
                },
            }
        ),
        cors_config=CORSConfig(
            allow_origins=list(settings.cors_origins),
            expose_headers=list(settings.cors_expose_headers),
            max_age=settings.cors_max_age_seconds,
        )
        if settings.cors_origins
        else None,
        openapi_config=OpenAPIConfig(
            title="Litebase",
            version=backend.__version__,
            description="Auth, collections, realtime, vectors, model gateway and jobs.",
            openapi_router=document_router("/schema"),
            operation_id_creator=operation_id_of,
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An access token from /auth/token, or an API key (lb_…)",
                    )
                }
            ),
        ),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
    )
    # Every answer, constraint and requirement in the document (backend/openapi.py).
    document_answers(app)
    return app
