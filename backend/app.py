"""create_app(): the one place that wires settings, plugins, routers and lifespan."""

from __future__ import annotations

import gc
import hmac
import ipaddress
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.stores.redis import RedisStore
from litestar.types import ControllerRouterHandler
from redis.asyncio import BlockingConnectionPool, Redis

import backend
from backend.ai.catalog import load_catalog
from backend.ai.gateway import Gateway
from backend.ai.prompt_routes import prompt_routers
from backend.ai.prompts import load_library
from backend.ai.routes import gateway_routers
from backend.ai.service import keep_overrides_copied
from backend.ai.summaries import check_summary
from backend.ai.usage import UsageWriter
from backend.auth.deps import AUTH_DEPENDENCIES, auth_service_for
from backend.auth.revocations import SessionStates
from backend.auth.routes import auth_routers
from backend.collections.reads import Reader, create_read_pool
from backend.collections.routes import collection_routers
from backend.collections.rules import compile_rules
from backend.collections.spec import CollectionRegistry
from backend.config import Settings, SettingsError, get_settings
from backend.db.base import metadata
from backend.db.migrate import head_revisions
from backend.db.transactions import owned_session, request_session
from backend.events.consumers import build_consumers
from backend.events.relay import OutboxRelay
from backend.events.tracing import start_tracing
from backend.identity import Principal
from backend.inputs import refuse_nul_characters
from backend.jobs.routes import JobController, ScheduleController
from backend.jobs.service import reindex_check
from backend.jobs.types import ReindexCollection, SummarizeRecord
from backend.lib.background import running
from backend.lib.clock import Clock, SystemClock
from backend.lib.request_metrics import RequestMetricsMiddleware
from backend.lib.tracing import litestar_plugins
from backend.lib.urls import async_database_url, libpq_database_url
from backend.logs import RequestIdMiddleware, configure_logging
from backend.mail.service import Mailer
from backend.orgs.routes import InvitationController, OrgController
from backend.paging import provide_paging
from backend.problems import Problem, problem_details_config
from backend.realtime.fanout import BoundedSubscriber, make_realtime_consumer
from backend.realtime.hub import RealtimeHub
from backend.realtime.rooms import Presence
from backend.realtime.routes import realtime
from backend.system.routes import SystemController
from backend.vectors.consumer import make_embedding_consumer
from backend.vectors.metrics import refresh_gauges
from backend.vectors.queries import QueryEmbeddings
from backend.vectors.routes import vector_routers
from backend.vectors.versions import ActiveVersions
from backend.webhooks.consumer import make_webhook_consumer
from backend.webhooks.routes import WebhookController
from workers.celery_app import create_celery_app


def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics tells the routes, rates and errors of the whole API: it answers sources in
    METRICS_ALLOWED_NETWORKS (a scraper inside the VPC; the ALB's clients are not) or a bearer
    of METRICS_TOKEN, and no one else."""
    settings: Settings = connection.app.state.settings
    host = connection.client.host if connection.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and any(
        address in ipaddress.ip_network(n, strict=False) for n in settings.metrics_allowed_networks
    ):
        return
    token = settings.metrics_token
    sent = connection.headers.get("authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return
    raise Problem(403, "Metrics are for the operator's scraper", code="forbidden")


class MetricsController(PrometheusController):
    path = "/metrics"
    guards = [metrics_guard]


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
    # A bounded pool that makes a burst wait for a connection rather than fail at once.
    redis = Redis(
        connection_pool=BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_seconds,
        )
    )
    clock = clock or SystemClock()
    celery = create_celery_app(settings)

    @asynccontextmanager
    async def close_clients(app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()
            celery.close()

    # Its sessions outside a handler's db_session (the engine's state key is made unique per app).
    database = _database_config(settings, settings.database_url)
    session_states = SessionStates(settings.session_cache_seconds)
    registry = collections or CollectionRegistry.discover()
    # models.yaml is checked whole here: a mistake stops the API before it serves.
    gateway = Gateway(load_catalog(settings), settings, redis, clock)
    # Prompt files too: a broken one stops the API, naming the file and the reason.
    prompts = load_library(Path(settings.prompts_dir))
    rules = compile_rules(registry, settings)
    embedded = any(c.embed is not None for c in registry)
    channels = ChannelsPlugin(
        backend=RedisChannelsPubSubBackend(redis=redis),
        arbitrary_channels_allowed=True,
        subscriber_max_backlog=settings.realtime_send_queue,
        subscriber_backlog_strategy="backoff",
        subscriber_class=BoundedSubscriber,
    )

    @asynccontextmanager
    async def start_realtime(app: Litestar) -> AsyncIterator[None]:
        async def authenticate(token: str) -> Principal:
            async with owned_session(database) as db:
                return await auth_service_for(db, app.state, settings).authenticate(token)

        hub = RealtimeHub(
            settings=settings,
            channels=channels,
            registry=registry,
            rules=rules,
            reader=app.state.reader,
            clock=app.state.clock,
            authenticate=authenticate,
            presence=Presence(redis, channels, settings.realtime_presence_ttl_seconds),
        )
        session_states.on_revoke(hub.session_revoked)
        session_states.on_access_change(hub.access_changed)
        app.state.realtime = hub
        async with running(hub.keep_presence, "presence"):
            yield

    @asynccontextmanager
    async def follow_revocations(app: Litestar) -> AsyncIterator[None]:
        async with running(partial(session_states.follow, redis), "revocations"):
            yield

    @asynccontextmanager
    async def open_read_pool(app: Litestar) -> AsyncIterator[None]:
        assert settings.database_url is not None
        pool = await create_read_pool(
            libpq_database_url(settings.database_url), settings.db_pool_size
        )
        app.state.reader = Reader(pool)
        app.state.embedding_versions = ActiveVersions(
            app.state.reader, settings.vector_version_cache_seconds
        )
        try:
            yield
        finally:
            await pool.close()

    @asynccontextmanager
    async def run_relay(app: Litestar) -> AsyncIterator[None]:
        if not settings.relay_enabled:
            yield
            return
        assert settings.database_url is not None
        relay = OutboxRelay(
            libpq_database_url(settings.database_url),
            [
                *([make_realtime_consumer(app)] if settings.realtime_enabled else []),
                *([make_embedding_consumer(app)] if embedded else []),
                make_webhook_consumer(app, database.get_engine()),
                *build_consumers(app, settings.relay_consumers),
            ],
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_seconds,
            standby_interval=settings.relay_standby_seconds,
        )
        app.state.relay = relay
        # A grace period: the relay finishes handing on its current batch.
        async with running(relay.run, "outbox-relay", grace=10):
            yield

    @asynccontextmanager
    async def embedding_gauges(app: Litestar) -> AsyncIterator[None]:
        if not embedded:
            yield
            return
        refresh = partial(
            refresh_gauges, registry, app.state.reader, app.state.embedding_versions, settings
        )
        async with running(refresh, "embedding-gauges"):
            yield

    @asynccontextmanager
    async def run_gateway(app: Litestar) -> AsyncIterator[None]:
        # The SQLAlchemy plugin's own engine (its lifespan, entered after this one, serves
        # the same), and Redis, which close_clients closes only after this lifespan ends:
        # the last usage events are written on the way out.
        engine = database.get_engine()
        writer = UsageWriter(redis, engine, settings)
        copy = partial(keep_overrides_copied, engine, gateway.budgets, settings)
        try:
            async with running(writer.run, "ai-usage", grace=5), running(copy, "ai-budgets"):
                try:
                    yield
                finally:
                    await gateway.settled()  # their usage events, before the last drain
        finally:
            await gateway.close()
            await engine.dispose()  # the plugin disposed of it first; the last drain reopened it

    @asynccontextmanager
    async def freeze_startup_objects(app: Litestar) -> AsyncIterator[None]:
        # What start-up built (routes, models, compiled rules, SQLAlchemy's and Litestar's own
        # structures) lives as long as the app: moved out of the collector's generations, the
        # full collections that allocation on every request triggers stop re-scanning it
        # (py-spy: ~6% of a list request was gc_collect_main). Unfrozen on the way out, so an
        # app that stops (tests build many) is collected as usual.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()

    prometheus = PrometheusConfig(
        app_name="litebase",
        prefix="litebase",
        group_path=True,
        exclude=["/metrics"],
        middleware_class=RequestMetricsMiddleware,
    )

    def provide_settings() -> Settings:
        return settings

    dependencies: dict[str, Any] = {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "paging": Provide(provide_paging, sync_to_thread=False),
        "db_session": Provide(request_session),
        **AUTH_DEPENDENCIES,
    }

    return Litestar(
        route_handlers=[
            SystemController,
            MetricsController,
            *auth_routers(settings),
            OrgController,
            InvitationController,
            JobController,
            ScheduleController,
            WebhookController,
            *collection_routers(registry, rules, settings),
            *vector_routers(registry, rules, settings),
            *prompt_routers(registry, rules, settings, prompts),
            *gateway_routers(settings),
            *([realtime] if settings.realtime_enabled else []),
            *route_handlers,
        ],
        plugins=[
            SQLAlchemyPlugin(config=database),
            ProblemDetailsPlugin(problem_details_config()),
            channels,
            *litestar_plugins(),
        ],
        middleware=[RequestIdMiddleware(), prometheus.middleware],
        # Postgres cannot store a NUL character: refused as a 422 before any route runs.
        before_request=refuse_nul_characters,
        lifespan=[
            close_clients,
            open_read_pool,
            start_realtime,
            follow_revocations,
            run_relay,
            embedding_gauges,
            run_gateway,
            freeze_startup_objects,
        ],
        dependencies=dependencies,
        stores={"rate_limit": RedisStore(redis, namespace="litebase:ratelimit")},
        state=State(
            {
                "migration_heads": head_revisions(),
                "redis": redis,
                "clock": clock,
                "mailer": Mailer(celery),
                "session_states": session_states,
                "celery": celery,
                "collections": registry,
                "settings": settings,
                "database": database,
                "query_embeddings": QueryEmbeddings(settings),
                "gateway": gateway,
                "prompts": prompts,
                # Each job type's input check, from the capability that owns the type.
                "job_input_checks": {
                    ReindexCollection: reindex_check(registry),
                    SummarizeRecord: lambda parsed: check_summary(parsed, registry, prompts),
                },
            }
        ),
        cors_config=CORSConfig(allow_origins=list(settings.cors_origins))
        if settings.cors_origins
        else None,
        openapi_config=OpenAPIConfig(
            title="Litebase",
            version=backend.__version__,
            description="Auth, collections, realtime, vectors, model gateway and jobs.",
            path="/schema",
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
